//! Redaction of secret strings from log text (ZUUL.md §3: secrets never appear in logs).
//!
//! Owns: the rule for what a secret's strings mask, turning a set of [`Secret`]s into
//! matchers and replacing every occurrence. A secret that spans lines (a PEM key, a
//! certificate) is also matched line by line, because logs arrive one line at a time.
//! Must not: decide which variables are secret (that is
//! [`Vars::secret_strings`](super::Vars::secret_strings) and `zuul_return`'s `secret_data`).
//!
//! The rule (docs/zuul-compat.md, "Log redaction"), by the field a string is found under:
//! 1. **Credentials** — a field named like a password, token, key, certificate or
//!    credential (`password`, `api_token`, `ssh_key`, `cert`, `auth`, …), and a secret
//!    that is a bare string: masked everywhere. Shorter than 8 characters, only where it
//!    stands alone: not inside a longer word or file name (`pw1` masks `token=pw1` and
//!    `:pw1@`, not `apw1b` or `pw1.txt`).
//! 2. **Identities** — `user`, `username`, `login`, `account`, `email`: masked only in a
//!    credential context (`user: X`, `username=X`, `-u X`, `--username X`, `://X:` or
//!    `://X@`), so the seed's username `zuul` never turns `zuul.yaml` into `******.yaml`.
//! 3. **Other fields** — masked everywhere when 8 characters or longer; shorter values of
//!    non-credential fields (`region: eu`) are left alone: masking them would hide ordinary
//!    words while protecting nothing.
//!
//! Fields that say *where* (`host`, `port`, `repository`) are not secret at all.

use regex::Regex;

/// What a secret is replaced with (the runner's build log uses the same).
pub const MASK: &str = "******";

/// Lines of a multi-line secret shorter than this are not masked on their own: a lone
/// `}` or `-----END` fragment would mask ordinary output without protecting anything.
const MIN_LINE: usize = 4;

/// Credentials shorter than this are masked only where they stand alone; other fields'
/// values shorter than this are not masked (see the module comment).
const SHORT: usize = 8;

/// How a secret string is masked (module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretKind {
    Credential,
    Identity,
    Other,
}

/// One string of a secret value, with how it must be masked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Secret {
    pub text: String,
    pub kind: SecretKind,
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret {
            text,
            kind: SecretKind::Credential,
        }
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret::from(text.to_string())
    }
}

impl PartialEq<String> for Secret {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

/// A compiled set of secrets.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Every masked-anywhere string (long credentials and other values), longest first.
    anywhere: Option<Regex>,
    /// Short credentials: masked where not inside a longer word or file name.
    alone: Option<Regex>,
    /// Identities: group 2 masked after a credential context in group 1.
    identity: Option<Regex>,
    secrets: Vec<Secret>,
}

/// Characters that continue a word or file name: a short secret next to one of these is
/// part of something else (`zuul_return`, `zuul.yaml`, `pw1-x`).
fn continues_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn alternation(mut list: Vec<&str>) -> Option<Regex> {
    if list.is_empty() {
        return None;
    }
    // Longest first, so a secret containing another is masked whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    list.dedup();
    let body = list
        .iter()
        .map(|s| regex::escape(s))
        .collect::<Vec<_>>()
        .join("|");
    Regex::new(&format!("(?:{body})")).ok()
}

impl Redactor {
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: Into<Secret>,
    {
        let mut r = Redactor::default();
        r.add(secrets);
        r
    }

    /// Adds secrets (e.g. `secret_data` returned during a run).
    pub fn add<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Secret>,
    {
        let before = self.secrets.len();
        for s in secrets {
            let s: Secret = s.into();
            if s.text.is_empty() {
                continue;
            }
            if s.text.contains('\n') {
                for line in s.text.lines().map(str::trim) {
                    let part = Secret {
                        text: line.to_string(),
                        kind: s.kind,
                    };
                    if line.len() >= MIN_LINE && !self.secrets.contains(&part) {
                        self.secrets.push(part);
                    }
                }
            }
            if !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        if self.secrets.len() != before {
            self.compile();
        }
    }

    fn compile(&mut self) {
        let mut anywhere = Vec::new();
        let mut alone = Vec::new();
        let mut identity = Vec::new();
        for s in &self.secrets {
            let long = s.text.chars().count() >= SHORT;
            match s.kind {
                SecretKind::Credential if long => anywhere.push(s.text.as_str()),
                SecretKind::Credential => alone.push(s.text.as_str()),
                SecretKind::Other if long => anywhere.push(s.text.as_str()),
                SecretKind::Other => {}
                SecretKind::Identity => identity.push(s.text.as_str()),
            }
        }
        self.anywhere = alternation(anywhere);
        self.alone = alternation(alone);
        self.identity = alternation(identity).and_then(|alt| {
            let context = r#"(?i)(://|(?:user(?:_?name)?|login|account|email)["']?\s*[:=]\s*["']?|(?:^|\s)-u\s+|--user(?:name)?[=\s]+)"#;
            Regex::new(&format!("{context}({})", alt.as_str())).ok()
        });
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The text with every secret replaced by [`MASK`], by the rule of the module comment.
    pub fn apply(&self, text: &str) -> String {
        let mut out = match &self.anywhere {
            Some(re) => re.replace_all(text, MASK).into_owned(),
            None => text.to_string(),
        };
        if let Some(re) = &self.alone {
            out = replace_alone(re, &out);
        }
        if let Some(re) = &self.identity {
            out = replace_identity(re, &out);
        }
        out
    }
}

/// Replaces the matches of `re` that are not inside a longer word or file name.
fn replace_alone(re: &Regex, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(m) = re.find_at(text, at) {
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if before.is_some_and(continues_word) || after.is_some_and(continues_word) {
            // Try again one character further (a shorter secret may start inside).
            at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        out.push_str(&text[copied..m.start()]);
        out.push_str(MASK);
        copied = m.end();
        at = m.end();
    }
    out.push_str(&text[copied..]);
    out
}

/// Masks identities that follow a credential context and stand alone.
fn replace_identity(re: &Regex, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(c) = re.captures_at(text, at) {
        let (Some(whole), Some(id)) = (c.get(0), c.get(2)) else {
            break;
        };
        let after = text[id.end()..].chars().next();
        // `.` may end a sentence after an e-mail address; `-`/`_`/alnum continue a name.
        if after.is_some_and(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-') {
            at = whole.start()
                + text[whole.start()..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
            continue;
        }
        out.push_str(&text[copied..id.start()]);
        out.push_str(MASK);
        copied = id.end();
        at = id.end();
    }
    out.push_str(&text[copied..]);
    out
}

/// A redaction function for a log sink, by the rule of the module comment.
pub fn redactor<I, S>(secrets: I) -> impl Fn(&str) -> String + Send + Sync + 'static
where
    I: IntoIterator<Item = S>,
    S: Into<Secret>,
{
    let r = Redactor::new(secrets);
    move |line: &str| r.apply(line)
}

/// Keys whose values say *where* or *what*, not how to get in: a registry's host and port
/// appear in every log line about it, and a credentials' `repository` regex in the error
/// that refuses an upload; masking them makes logs useless while protecting nothing
/// (ZUUL.md §9's `buildset_registry` is secret data because of its password and cert).
const NOT_SECRET_KEYS: &[&str] = &["host", "port", "repository"];

/// Field names (lowercase substrings) of credentials.
const CREDENTIAL_KEYS: &[&str] = &[
    "pass", "pw", "token", "secret", "key", "cert", "cred", "auth", "private",
];

/// Field names (lowercase substrings) of identities.
const IDENTITY_KEYS: &[&str] = &["user", "login", "account", "email"];

fn kind_of(key: Option<&str>) -> SecretKind {
    let Some(key) = key else {
        return SecretKind::Credential;
    };
    let k = key.to_ascii_lowercase();
    if CREDENTIAL_KEYS.iter().any(|c| k.contains(c)) {
        SecretKind::Credential
    } else if IDENTITY_KEYS.iter().any(|c| k.contains(c)) {
        SecretKind::Identity
    } else {
        SecretKind::Other
    }
}

/// The strings of a secret value that must never be logged, each with how it is masked
/// (by the field it is found under), except the values of [`NOT_SECRET_KEYS`].
pub fn secret_leaves(v: &serde_json::Value) -> Vec<Secret> {
    fn walk(v: &serde_json::Value, key: Option<&str>, out: &mut Vec<Secret>) {
        match v {
            serde_json::Value::String(s) if !s.is_empty() => out.push(Secret {
                text: s.clone(),
                kind: kind_of(key),
            }),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, out)),
            serde_json::Value::Object(o) => o
                .iter()
                .filter(|(k, _)| !NOT_SECRET_KEYS.contains(&k.as_str()))
                .for_each(|(k, x)| walk(x, Some(k), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, None, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Redactor {
        // The seed's intermediate registry secret, as the runner sees it.
        Redactor::new(secret_leaves(&json!({
            "host": "127.0.0.1", "port": 5000,
            "username": "zuul", "password": "Xk3-long-password",
            "api_token": "pw1",
        })))
    }

    #[test]
    fn ordinary_words_and_file_names_are_never_masked() {
        let r = seed();
        for line in [
            "TASK [zuul_return] zuul.yaml zuul.d/jobs.yaml",
            "changed: [localhost] => zuul.project.name",
            "the zuul user's home",
            "apw1b pw1.txt pw1-x",
            "127.0.0.1:5000",
        ] {
            assert_eq!(r.apply(line), line);
        }
    }

    #[test]
    fn passwords_and_tokens_are_masked_everywhere() {
        let r = seed();
        assert_eq!(
            r.apply("login with Xk3-long-password; x=Xk3-long-passwordy"),
            "login with ******; x=******y"
        );
        assert_eq!(
            r.apply("token=pw1 'pw1' :pw1@"),
            "token=****** '******' :******@"
        );
    }

    #[test]
    fn usernames_are_masked_in_credential_contexts_only() {
        let r = seed();
        assert_eq!(
            r.apply("https://zuul:******@host/v2/"),
            "https://******:******@host/v2/"
        );
        assert_eq!(r.apply("username: zuul"), "username: ******");
        assert_eq!(
            r.apply(r#"{"username": "zuul"}"#),
            r#"{"username": "******"}"#
        );
        assert_eq!(
            r.apply("docker login -u zuul --password-stdin"),
            "docker login -u ****** --password-stdin"
        );
        assert_eq!(r.apply("--username=zuul"), "--username=******");
        assert_eq!(r.apply("user: zuulx"), "user: zuulx");
        assert_eq!(
            r.apply("run zuul.yaml as user zuul"),
            "run zuul.yaml as user zuul"
        );
    }

    #[test]
    fn short_values_of_other_fields_are_left_alone_long_ones_masked() {
        let r = Redactor::new(secret_leaves(
            &json!({"region": "eu", "bucket": "my-bucket-42"}),
        ));
        assert_eq!(r.apply("eu my-bucket-42"), "eu ******");
    }

    #[test]
    fn bare_strings_are_credentials() {
        let r = redactor(["hunter2", "hunter2-extended", ""]);
        assert_eq!(r("a hunter2 b hunter2-extended c"), "a ****** b ****** c");
        assert_eq!(r("nothing here"), "nothing here");
    }

    #[test]
    fn multi_line_secrets_match_line_by_line() {
        let r = redactor(["-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA\n}\n-----END KEY-----"]);
        assert_eq!(r("  MIIEpAIBAAKCAQEA"), "  ******");
        assert_eq!(r("}"), "}", "short lines are left alone");
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

    #[test]
    fn endpoints_are_not_secret_and_fields_give_the_kind() {
        let v = json!({"host": "127.0.0.1", "port": 5000, "username": "zuul", "password": "pw-123456", "cert": "-----BEGIN"});
        let got: Vec<(String, SecretKind)> = secret_leaves(&v)
            .into_iter()
            .map(|s| (s.text, s.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("zuul".into(), SecretKind::Identity),
                ("pw-123456".into(), SecretKind::Credential),
                ("-----BEGIN".into(), SecretKind::Credential),
            ]
        );
        assert_eq!(secret_leaves(&json!("plain")), vec!["plain".to_string()]);
    }
}
