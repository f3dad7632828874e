//! Issue 13 item 6 / issue 14 item 1: the job's nodes, groups, host-vars, group-vars,
//! `nodepool`, `hostvars`, `groups` and the fact cache, as Zuul's executor gives them to
//! playbooks (zuul-ci/zuul `zuul/executor/server.py`, `getHostList` and
//! `make_inventory_dict`, read at the mirror
//! sambacha/zuul-zuul@28a23df46853b98d5ef31f0c49008ec1399ac63a).
//!
//! Differential: `tests/fixtures/ansible/inventory` runs under `--executor builtin` and
//! `--executor ansible` (real ansible-core from the test venv); every file the playbooks
//! wrote must be identical, and hold what Zuul's executor would give.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the fixture `name` with `executor`; per job, the files its work directory got
/// (JSON parsed, other text as a string).
fn run(name: &str, executor: &str, ansible: &Path) -> BTreeMap<String, BTreeMap<String, Value>> {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut jobs = BTreeMap::new();
    let jobs_dir = repo().join("jobs");
    let extra = [std::ffi::OsStr::new("--jobs-dir"), jobs_dir.as_os_str()];
    let dir = repo().join("tests/fixtures/ansible").join(name);
    for b in common::run_check_builds(&dir, executor, ansible, &state, &extra) {
        // The playbooks write under `zuul.executor.work_root` (the state directory).
        let job = b["job"].as_str().unwrap();
        let out = state.join(format!("out-{job}"));
        let mut files = BTreeMap::new();
        collect(&out, &out, &mut files);
        if state.join(format!("out-{job}-all-ran")).exists() {
            files.insert("all-ran".into(), Value::Bool(true));
        }
        jobs.insert(job.to_string(), files);
    }
    jobs
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, Value>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            out.insert(rel, v);
        }
    }
}

#[test]
fn nodes_groups_vars_and_facts_match_real_ansible() {
    let Some(ansible) = common::venv_tool("ansible-playbook") else {
        return;
    };
    let builtin = run("inventory", "builtin", &ansible);
    let real = run("inventory", "ansible", &ansible);
    assert_eq!(
        builtin,
        real,
        "builtin:\n{}\nansible:\n{}",
        serde_json::to_string_pretty(&builtin).unwrap(),
        serde_json::to_string_pretty(&real).unwrap()
    );

    let files = &builtin["inventory-vars"];
    let c1 = &files["compute1.json"];
    let c2 = &files["compute2.json"];
    let ctl = &files["controller.json"];
    // Every node, named as the nodeset names it, in its groups.
    assert_eq!(
        ctl["groups"],
        json!({"all": ["controller", "compute1", "compute2"], "ungrouped": ["controller"],
               "computes": ["compute1", "compute2"], "switch": ["compute2"]})
    );
    assert_eq!(ctl["group_names"], json!(["ungrouped"]));
    assert_eq!(c2["group_names"], json!(["computes", "switch"]));
    assert_eq!(
        c1["play_hosts"],
        json!(["controller", "compute1", "compute2"])
    );
    // job vars < group-vars (by group name) < host-vars < extra-vars.
    assert_eq!(ctl["layer"], "job");
    assert_eq!(c1["layer"], "host");
    assert_eq!(c2["layer"], "switch");
    assert_eq!(c2["only_group"], "computes");
    assert_eq!(ctl["only_group"], "undefined");
    for h in [c1, c2, ctl] {
        assert_eq!(h["over"], "extra", "{h}");
        assert_eq!(h["connection"], "local");
        // Non-cacheable facts stay in pre-run; cacheable ones reach run (fact cache).
        assert_eq!(h["plain_fact"], "undefined", "{h}");
        assert_eq!(
            h["cached_fact"],
            format!("cached-{}", h["inventory_hostname"].as_str().unwrap())
        );
        assert_eq!(h["compute1_layer"], "host");
        assert_eq!(h["compute2_label"], "ubuntu-jammy");
        assert_eq!(
            h["hostvars_hosts"],
            // The implicit localhost too, as ansible-core 2.16 lists it.
            json!(["compute1", "compute2", "controller", "localhost"])
        );
    }
    // Zuul's nodepool mapping, with a local node's values.
    assert_eq!(c1["nodepool"]["label"], "ubuntu-jammy");
    assert_eq!(ctl["nodepool"]["label"], "ubuntu-noble");
    assert_eq!(ctl["nodepool"]["interface_ip"], "127.0.0.1");
    for k in [
        "az",
        "cloud",
        "provider",
        "region",
        "host_id",
        "interface_ip",
        "public_ipv4",
        "private_ipv4",
        "public_ipv6",
    ] {
        assert!(ctl["nodepool"].get(k).is_some(), "nodepool.{k}");
    }
    // Host patterns over the inventory.
    assert_eq!(files["first-compute-compute1"], "compute1");
    assert!(!files.contains_key("first-compute-compute2"));
    assert_eq!(files["not-switch-controller"], "controller,compute1");
    assert!(!files.contains_key("not-switch-compute2"));
    // `localhost` is not a node here: the implicit localhost, in no group, with job vars.
    assert_eq!(
        files["implicit-localhost.json"],
        json!({"group_names": [], "layer": "job", "nodepool": "undefined"})
    );

    // `nodes: []`: `hosts: all` selects nothing; `localhost` is the implicit one.
    let empty = &builtin["empty-nodeset"];
    assert!(!empty.contains_key("all-ran"), "{empty:?}");
    assert_eq!(
        empty["localhost.json"],
        json!({"inventory_hostname": "localhost", "groups": {"all": [], "ungrouped": []},
               "group_names": []})
    );
}
