//! Does a frozen job run for this change? Zuul's `branches`, `files` and
//! `irrelevant-files` matchers (`zuul/change_matcher.py`), evaluated on the change's branch
//! and the files it touches.
//!
//! Rules (Zuul's): patterns are regular expressions matched at the *start* of the branch
//! or path (Python's `re.match`); `files`: at least one changed file matches; with
//! `irrelevant-files`: at least one changed file matches none of them; a change that
//! touches the job's own configuration runs it anyway (`match-on-config-updates`, default
//! true). Without file information every job runs. Must not: read git or files.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// What is known about the change a graph is built for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeInfo {
    /// The target branch; `None`: branch matchers are not evaluated.
    pub branch: Option<String>,
    /// The files the change touches; `None`: file matchers are not evaluated.
    pub files: Option<Vec<String>>,
}

impl ChangeInfo {
    /// True when some matcher input is known.
    pub fn evaluates(&self) -> bool {
        self.branch.is_some() || self.files.is_some()
    }
}

/// A compiled pattern: the engine Zuul would have used for it.
#[derive(Debug)]
pub enum Pattern {
    /// re2's syntax, read by the `regex` crate (the same family: no look-around, no
    /// back-references, empty-width assertions may be repeated, e.g. `^*`).
    Re2(regex::Regex),
    /// Python's `re` syntax, for patterns re2 rejects.
    Python(fancy_regex::Regex),
}

impl Pattern {
    /// Does the pattern match at the start of `text` (it is compiled anchored)?
    pub fn is_match(&self, text: &str) -> bool {
        match self {
            Pattern::Re2(r) => r.is_match(text),
            Pattern::Python(r) => r.is_match(text).unwrap_or(false),
        }
    }
}

type Compiled = Result<Arc<Pattern>, String>;

/// Patterns compiled once per process (a graph evaluates the same few patterns for every
/// job and file).
static CACHE: LazyLock<Mutex<HashMap<String, Compiled>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A pattern as Zuul reads it: `ZuulRegex` (`zuul/lib/re2util.py`, zuul commit
/// d4fac1a0e8) compiles with re2 and, only when re2 rejects it, with Python's `re`. So a
/// pattern re2 accepts and Python rejects is valid (openstack-zuul-jobs' `^*/(victoria|…)$`:
/// re2 reads `^*` as a repeated anchor), and every pattern Python accepts works,
/// look-around and back-references included. The `regex` crate stands for re2;
/// `fancy-regex` for `re` (Python's `\Z`, end of text, is its `\z`). Anchored at the start
/// only, like `match`. `Err`: why neither engine can read the pattern (Python's reason).
pub fn compile(pattern: &str) -> Result<Arc<Pattern>, String> {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.get(pattern) {
        return c.clone();
    }
    let compiled = match regex::Regex::new(&format!("^(?:{pattern})")) {
        Ok(r) => Ok(Arc::new(Pattern::Re2(r))),
        Err(_) => fancy_regex::Regex::new(&format!("^(?:{})", python_to_fancy(pattern)))
            .map(|r| Arc::new(Pattern::Python(r)))
            .map_err(|e| e.to_string()),
    };
    cache.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// Python-only escapes rewritten: `\Z` → `\z` (an escaped backslash is left alone).
fn python_to_fancy(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('Z') => out.push_str("\\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Python's `re.match`: anchored at the start, not at the end. A pattern that cannot be
/// read matches nothing (configuration loading reports it with its file:line).
pub fn re_match(pattern: &str, text: &str) -> bool {
    match compile(pattern) {
        Ok(re) => re.is_match(text),
        Err(_) => false,
    }
}

/// One `branches`, `files` or `irrelevant-files` entry: a pattern, or Zuul's
/// `{regex: PATTERN, negate: true}` (`ZUUL_REGEX` in `zuul/configloader.py`), which matches
/// what the pattern does not (`ZuulRegex.match`: `not re.match(...)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    pub regex: String,
    pub negate: bool,
}

impl Matcher {
    /// A plain pattern.
    pub fn new(regex: impl Into<String>) -> Matcher {
        Matcher {
            regex: regex.into(),
            negate: false,
        }
    }

    /// Zuul's `ZuulRegex.match`, negation applied. A pattern that cannot be read matches
    /// nothing, negated or not (loading reports it).
    pub fn matches(&self, text: &str) -> bool {
        match compile(&self.regex) {
            Ok(re) => re.is_match(text) != self.negate,
            Err(_) => false,
        }
    }
}

impl std::fmt::Display for Matcher {
    /// The pattern; a negated one as `!PATTERN` (how `job show` lists it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negate {
            write!(f, "!{}", self.regex)
        } else {
            f.write_str(&self.regex)
        }
    }
}

impl PartialEq<&str> for Matcher {
    fn eq(&self, other: &&str) -> bool {
        !self.negate && self.regex == *other
    }
}

/// JSON as Zuul writes it (`ZuulRegex.toDict`), a plain string when not negated (so the
/// frozen job of a configuration without `negate` reads as before).
impl serde::Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.negate {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("regex", &self.regex)?;
            m.serialize_entry("negate", &true)?;
            m.end()
        } else {
            s.serialize_str(&self.regex)
        }
    }
}

/// Does a variant (or job) with these `branches` apply on `branch`? (Zuul's `MatchAny`
/// over `BranchMatcher`s.)
pub fn branch_matches(branches: &[Matcher], branch: Option<&str>) -> bool {
    match branch {
        None => true,
        Some(b) => branches.is_empty() || branches.iter().any(|m| m.matches(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_at_the_start_like_python_re_match() {
        assert!(re_match("keystone/.*", "keystone/Dockerfile"));
        assert!(re_match(
            "zuul.d/test-openstack.*",
            "zuul.d/test-openstack-x.yaml"
        ));
        assert!(!re_match("nova/.*", "src/nova/x"));
        assert!(re_match("stable/.*", "stable/2025.1"));
        // Python's syntax, which the `regex` crate rejects: look-ahead, look-behind,
        // back-references, `\Z`.
        assert!(re_match("^(?!stable/).*$", "master"));
        assert!(!re_match("^(?!stable/).*$", "stable/2025.1"));
        assert!(re_match("(?!master$)", "main"));
        assert!(!re_match("(?!master$)", "master"));
        assert!(re_match(".*(?<!-eol)$", "stable/zed"));
        assert!(!re_match(".*(?<!-eol)$", "stable/zed-eol"));
        assert!(re_match(r"(\w+)-\1", "abc-abc"));
        assert!(!re_match(r"(\w+)-\1", "abc-abd"));
        assert!(re_match(r"master\Z", "master"));
        assert!(!re_match(r"master\Z", "master2"));
        assert!(re_match(r"(?P<series>stable)/.*", "stable/x"));
    }

    #[test]
    fn patterns_re2_reads_are_valid_even_when_python_rejects_them() {
        // openstack/openstack-zuul-jobs zuul.d/jobs.yaml (b8ff5c89): re2 reads `^*` as a
        // repeated start anchor, so `/` must be the first character; Python's `re` says
        // "nothing to repeat". Zuul compiles with re2 first, so the job loads.
        let p = "^*/(victoria|wallaby|2024.2)$";
        assert!(compile(p).is_ok());
        assert!(matches!(*compile(p).unwrap(), Pattern::Re2(_)));
        assert!(!re_match(p, "stable/victoria"));
        assert!(re_match(p, "/victoria"));
        // What re2 rejects goes to Python's syntax.
        assert!(matches!(*compile("(?!x)").unwrap(), Pattern::Python(_)));
    }

    #[test]
    fn patterns_python_rejects_too_are_errors() {
        assert!(compile("stable/(").is_err());
        assert!(compile("*").is_err());
        assert!(!re_match("stable/(", "stable/("));
    }

    #[test]
    fn negated_matchers_match_what_their_pattern_does_not() {
        let m = Matcher {
            regex: "^.*/(victoria|zed|2024.2)$".into(),
            negate: true,
        };
        assert!(m.matches("master"));
        assert!(!m.matches("stable/zed"));
        assert!(m.matches("stable/2025.1"));
        // A negated branch matcher selects the variant on every other branch.
        assert!(branch_matches(std::slice::from_ref(&m), Some("master")));
        assert!(!branch_matches(
            std::slice::from_ref(&m),
            Some("stable/zed")
        ));
        // Any matcher of the list is enough (Zuul's MatchAny).
        let both = [m.clone(), Matcher::new("stable/zed")];
        assert!(branch_matches(&both, Some("stable/zed")));
        // Written as Zuul's toDict writes it; a plain one stays a string.
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"regex":"^.*/(victoria|zed|2024.2)$","negate":true}"#
        );
        assert_eq!(
            serde_json::to_string(&Matcher::new("a/.*")).unwrap(),
            r#""a/.*""#
        );
        assert_eq!(m.to_string(), "!^.*/(victoria|zed|2024.2)$");
        // An unreadable pattern matches nothing, negated or not.
        assert!(
            !Matcher {
                regex: "(".into(),
                negate: true
            }
            .matches("x")
        );
    }

    #[test]
    fn branches_select_variants() {
        let b = vec![Matcher::new("stable/.*")];
        assert!(branch_matches(&b, Some("stable/2025.1")));
        assert!(!branch_matches(&b, Some("master")));
        assert!(branch_matches(&b, None));
        assert!(branch_matches(&[], Some("master")));
    }
}
