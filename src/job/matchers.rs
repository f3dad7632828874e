//! Does a frozen job run for this change? Zuul's `branches`, `files` and
//! `irrelevant-files` matchers (`zuul/change_matcher.py`), evaluated on the change's branch
//! and the files it touches.
//!
//! Rules (Zuul's): patterns are regular expressions matched at the *start* of the branch
//! or path (Python's `re.match`); `files`: at least one changed file matches; with
//! `irrelevant-files`: at least one changed file matches none of them; a change that
//! touches the job's own configuration runs it anyway (`match-on-config-updates`, default
//! true). Without file information every job runs. Must not: read git or files.

use regex::Regex;

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

/// Python's `re.match`: anchored at the start, not at the end. A pattern the `regex` crate
/// cannot read (look-around, back-references) is compared literally.
pub fn re_match(pattern: &str, text: &str) -> bool {
    match Regex::new(&format!("^(?:{pattern})")) {
        Ok(re) => re.is_match(text),
        Err(_) => pattern == text,
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
        // Look-ahead is Python-only: compared literally instead of rejected.
        assert!(!re_match("^(?!stable).*$", "master"));
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
