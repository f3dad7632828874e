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

use fancy_regex::Regex;

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

type Compiled = Result<Arc<Regex>, String>;

/// Patterns compiled once per process (a graph evaluates the same few patterns for every
/// job and file).
static CACHE: LazyLock<Mutex<HashMap<String, Compiled>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A pattern as Zuul reads it: `ZuulRegex` (`zuul/lib/re2util.py`) tries re2 and falls
/// back to Python's `re`, so every pattern Python accepts works, look-around and
/// back-references included. `fancy-regex` reads that syntax (a backtracking engine over
/// `regex`); Python's `\Z` (end of text) is its `\z`. Anchored at the start only, like
/// `re.match`. `Err`: why the pattern cannot be read.
pub fn compile(pattern: &str) -> Result<Arc<Regex>, String> {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.get(pattern) {
        return c.clone();
    }
    let translated = python_to_fancy(pattern);
    let compiled = Regex::new(&format!("^(?:{translated})"))
        .map(Arc::new)
        .map_err(|e| e.to_string());
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
        Ok(re) => re.is_match(text).unwrap_or(false),
        Err(_) => false,
    }
}

/// Does a variant (or job) with these `branches` apply on `branch`?
pub fn branch_matches(branches: &[String], branch: Option<&str>) -> bool {
    match branch {
        None => true,
        Some(b) => branches.is_empty() || branches.iter().any(|p| re_match(p, b)),
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
    fn patterns_python_rejects_too_are_errors() {
        assert!(compile("stable/(").is_err());
        assert!(compile("*").is_err());
        assert!(!re_match("stable/(", "stable/("));
    }

    #[test]
    fn branches_select_variants() {
        let b = vec!["stable/.*".to_string()];
        assert!(branch_matches(&b, Some("stable/2025.1")));
        assert!(!branch_matches(&b, Some("master")));
        assert!(branch_matches(&b, None));
        assert!(branch_matches(&[], Some("master")));
    }
}
