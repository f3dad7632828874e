//! Issue 14: a relative `dest`/`path`/`chdir` means the same under both executors — the
//! job's work directory, where Zuul's executor starts ansible-playbook
//! (zuul/executor/server.py, `AnsibleJob.runAnsible`: `cwd=self.jobdir.work_root`) and
//! what stands in for a Zuul node's home directory. ansible-core's own `local`
//! connection would move each command into the playbook's directory; gantry ships a
//! `local` connection plugin that does not (src/playbook/ansible/plugins/local.py).
//!
//! Differential: `tests/fixtures/ansible/relative-paths` (a node, and the implicit
//! localhost of an empty nodeset) under `--executor builtin` and `--executor ansible`;
//! the files each build's work directory got must be identical, and nothing may be
//! written beside the playbooks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ansible/relative-paths")
}

/// Per job, the files under `rel/` of its build's work directory.
fn run(executor: &str, ansible: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let tmp = tempfile::tempdir().unwrap();
    let mut jobs = BTreeMap::new();
    for b in common::run_check_builds(&fixture(), executor, ansible, tmp.path(), &[]) {
        let log = PathBuf::from(b["log"].as_str().unwrap());
        let rel = log.parent().unwrap().join("work/rel");
        let mut files = BTreeMap::new();
        collect(&rel, &rel, &mut files);
        jobs.insert(b["job"].as_str().unwrap().to_string(), files);
    }
    jobs
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
    }
}

#[test]
fn relative_paths_resolve_in_the_work_directory_under_both_executors() {
    let Some(ansible) = common::venv_tool("ansible-playbook") else {
        return;
    };
    let stray = fixture().join("playbooks/rel");
    let builtin = run("builtin", &ansible);
    let real = run("ansible", &ansible);
    let wrote_beside_playbooks = stray.exists();
    let _ = std::fs::remove_dir_all(&stray);
    assert!(
        !wrote_beside_playbooks,
        "a relative path resolved against the playbook's directory"
    );
    assert_eq!(builtin, real, "builtin (left) and ansible (right) differ");
    for job in ["relative-on-a-node", "relative-on-localhost"] {
        let files = &builtin[job];
        assert_eq!(files["dir/copied.txt"], "copied\n", "{job}: {files:?}");
        assert_eq!(files["dir/templated.txt"], format!("templated for {job}\n"));
        assert_eq!(files["dir/lines.txt"], "a line\n");
        assert_eq!(files["stat.txt"], "True 7\n");
        assert_eq!(files["cat.txt"], "copied\n");
        assert_eq!(files["shell.txt"], "found\n");
    }
}
