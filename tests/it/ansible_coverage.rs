//! Issue 14 acceptance: every construct docs/zuul-compat.md lists as supported, and every
//! item of the issue, has at least one differential case. The list is
//! `tests/fixtures/playbook-diff/constructs.txt` (`label|text`); a construct whose text no
//! file under `tests/fixtures/playbook-diff/cases/` contains fails this test, by name.

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/playbook-diff")
}

fn read_all(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            read_all(&p, out);
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            out.push_str(&text);
            out.push('\n');
        }
    }
}

#[test]
fn every_listed_construct_has_a_differential_case() {
    let mut corpus = String::new();
    read_all(&fixtures().join("cases"), &mut corpus);
    let list = std::fs::read_to_string(fixtures().join("constructs.txt")).unwrap();
    let mut listed = 0;
    let missing: Vec<&str> = list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            listed += 1;
            let (label, needle) = l.split_once('|').expect("label|text");
            (!corpus.contains(needle)).then_some(label)
        })
        .collect();
    assert!(listed > 100, "constructs.txt lists {listed}");
    assert!(
        missing.is_empty(),
        "constructs without a differential case: {missing:?}"
    );
}
