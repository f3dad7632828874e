//! Redaction of secret strings from log text (ZUUL.md §3: secrets never appear in logs).
//!
//! Owns: turning a set of secret strings into one matcher and replacing every occurrence.
//! A secret that spans lines (a PEM key, a certificate) is also matched line by line,
//! because logs arrive one line at a time. Must not: decide what is secret (that is
//! [`Vars::secret_strings`](super::Vars::secret_strings) and `zuul_return`'s `secret_data`).

use regex::Regex;

/// What a secret is replaced with (the runner's build log uses the same).
pub const MASK: &str = "******";

/// Lines of a multi-line secret shorter than this are not masked on their own: a lone
/// `}` or `-----END` fragment would mask ordinary output without protecting anything.
const MIN_LINE: usize = 4;

/// Secrets shorter than this are masked only as whole words: a secret's `user: zuul`
/// must not turn `zuul_return` into `******_return`, while `zuul` alone, `:zuul@` or
/// `token=zuul` are still masked. Longer secrets are masked wherever they appear.
const WHOLE_WORD_BELOW: usize = 8;

/// A compiled set of secrets.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    re: Option<Regex>,
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut r = Redactor::default();
        r.add(secrets);
        r
    }

    /// Adds secrets (e.g. `secret_data` returned during a run).
    pub fn add<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let before = self.secrets.len();
        for s in secrets {
            let s: String = s.into();
            if s.is_empty() {
                continue;
            }
            if s.contains('\n') {
                for line in s.lines().map(str::trim) {
                    if line.len() >= MIN_LINE && !self.secrets.iter().any(|x| x == line) {
                        self.secrets.push(line.to_string());
                    }
                }
            }
            if !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        if self.secrets.len() == before {
            return;
        }
        // Longest first, so a secret containing another is masked whole.
        let mut sorted: Vec<&String> = self.secrets.iter().collect();
        sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let pattern = sorted
            .iter()
            .map(|s| {
                let mut p = regex::escape(s);
                if s.chars().count() < WHOLE_WORD_BELOW {
                    if word(s.chars().next()) {
                        p.insert_str(0, r"\b");
                    }
                    if word(s.chars().last()) {
                        p.push_str(r"\b");
                    }
                }
                p
            })
            .collect::<Vec<_>>()
            .join("|");
        // Escaped literals always compile; a size-limit failure leaves the previous matcher
        // and the literal fallback in `apply` covers the rest.
        if let Ok(re) = Regex::new(&pattern) {
            self.re = Some(re);
        } else {
            self.re = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The text with every secret replaced by [`MASK`].
    pub fn apply(&self, text: &str) -> String {
        match &self.re {
            Some(re) => re.replace_all(text, MASK).into_owned(),
            // Only when the matcher could not be built (too large): mask literally.
            None => {
                let mut out = text.to_string();
                for s in &self.secrets {
                    out = out.replace(s.as_str(), MASK);
                }
                out
            }
        }
    }
}

/// A redaction function for a log sink: every secret string (and every line of a
/// multi-line secret) is replaced by `******`.
pub fn redactor<I, S>(secrets: I) -> impl Fn(&str) -> String + Send + Sync + 'static
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let r = Redactor::new(secrets);
    move |line: &str| r.apply(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = redactor(["hunter2", "hunter2-extended", ""]);
        assert_eq!(r("a hunter2 b hunter2-extended c"), "a ****** b ****** c");
        assert_eq!(r("nothing here"), "nothing here");
        assert_eq!(r("regex chars hunter2"), "regex chars ******");
    }

    #[test]
    fn multi_line_secrets_match_line_by_line() {
        let r = redactor(["-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA\n}\n-----END KEY-----"]);
        assert_eq!(r("  MIIEpAIBAAKCAQEA"), "  ******");
        assert_eq!(r("}"), "}", "short lines are left alone");
    }

    #[test]
    fn short_secrets_are_masked_as_words() {
        let r = redactor(["zuul", "pw1"]);
        assert_eq!(
            r("user zuul, zuul_return, zuul.project"),
            "user ******, zuul_return, ******.project"
        );
        assert_eq!(
            r("https://zuul:pw1@host token=pw1"),
            "https://******:******@host token=******"
        );
        assert_eq!(r("apw1b"), "apw1b");
    }

    #[test]
    fn special_characters_are_literal() {
        let r = redactor(["a.b*c(d)+e"]);
        assert_eq!(r("xa.b*c(d)+ex aXb*c(d)+e"), "x******x aXb*c(d)+e");
    }

    #[test]
    fn secrets_can_be_added() {
        let mut r = Redactor::new(Vec::<String>::new());
        assert!(r.is_empty());
        assert_eq!(r.apply("pw"), "pw");
        r.add(["pw12"]);
        assert_eq!(r.apply("x pw12"), "x ******");
    }
}

/// Keys whose values say *where* or *what*, not how to get in: a registry's host and port
/// appear in every log line about it, and a credentials' `repository` regex in the error
/// that refuses an upload; masking them makes logs useless while protecting nothing
/// (ZUUL.md §9's `buildset_registry` is secret data because of its password and cert).
const NOT_SECRET_KEYS: &[&str] = &["host", "port", "repository"];

/// The strings of a secret value that must never be logged: every string leaf, except
/// the values of [`NOT_SECRET_KEYS`] in a mapping.
pub fn secret_leaves(v: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if !s.is_empty() => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o
                .iter()
                .filter(|(k, _)| !NOT_SECRET_KEYS.contains(&k.as_str()))
                .for_each(|(_, x)| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

#[cfg(test)]
mod leaves_tests {
    #[test]
    fn endpoints_are_not_secret() {
        let v = serde_json::json!({"host": "127.0.0.1", "port": 5000, "username": "zuul", "password": "pw-123456", "cert": "-----BEGIN"});
        let mut got = super::secret_leaves(&v);
        got.sort();
        assert_eq!(got, vec!["-----BEGIN", "pw-123456", "zuul"]);
        assert_eq!(
            super::secret_leaves(&serde_json::json!("plain")),
            vec!["plain"]
        );
    }
}
