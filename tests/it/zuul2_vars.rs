//! The `zuul` variable's keys Zuul sets and gantry did not (`zuul.resources`,
//! `ansible_version`, `playbook_context`, `buildset_refs`, `build_refs`, `post_review`,
//! `include_vars`, and `Change.toDict`'s `commit_id`, `change_message`, `topic`), the same
//! under both executors. Zuul's sources, zuul commit b5bc01c72d: `construct_build_params`
//! (zuul/executor/common.py), `AnsibleJob.prepareVars` and `prepareNodes`
//! (zuul/executor/server.py), `Change.toDict` (zuul/model.py).

use std::path::Path;
use std::process::Command;

use crate::common;

/// Every key of Zuul's `zuul` variable for a change (a build without artifacts).
const ZUUL_KEYS: &[&str] = &[
    // Change.toDict
    "project",
    "change_url",
    "branch",
    "change",
    "patchset",
    "commit_id",
    "change_message",
    "topic",
    // construct_build_params
    "build",
    "buildset",
    "ref",
    "buildset_refs",
    "build_refs",
    "pipeline",
    "post_review",
    "job",
    "tenant",
    "event_id",
    "jobtags",
    "include_vars",
    "message",
    "projects",
    "items",
    "child_jobs",
    // prepareVars
    "resources",
    "executor",
    "ansible_version",
    "playbook_context",
];

fn project(dir: &Path) {
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(
        dir.join("zuul.yaml"),
        "- job:\n    name: vars\n    pre-run: playbooks/pre.yaml\n    run: playbooks/vars.yaml\n- project:\n    name: example/app\n    check:\n      jobs: [vars]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("playbooks/pre.yaml"),
        "- hosts: localhost\n  tasks: []\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("playbooks/vars.yaml"),
        concat!(
            "- hosts: localhost\n  tasks:\n    - debug:\n        msg: >-\n",
            "          keys {{ zuul | list | sort | join(',') }}\n",
            "          resources {{ zuul.resources | length }}\n",
            "          ansible_version {{ zuul.ansible_version }}\n",
            "          post_review {{ zuul.post_review }}\n",
            "          include_vars {{ zuul.include_vars | length }}\n",
            "          refs {{ zuul.buildset_refs | map(attribute='project') | map(attribute='name') | join(',') }}",
            " {{ zuul.build_refs[0].change }} {{ zuul.build_refs[0].src_dir == zuul.project.src_dir }}\n",
            "          playbooks {{ zuul.playbook_context.playbooks | map(attribute='path') | map('basename') | join(',') }}",
            " projects {{ zuul.playbook_context.playbook_projects | length }}\n",
            // `is none`: printed, None is "None" under the built-in interpreter and ""
            // under Ansible (its templar's finalize), a difference of their own.
            "          topic {{ zuul.topic is none }} commit {{ zuul.commit_id is none }}\n",
        ),
    )
    .unwrap();
}

/// The debug line of the run playbook, under `executor`.
fn line(executor: &str) -> Option<String> {
    let ansible = common::venv_tool("ansible-playbook");
    if executor == "ansible" && ansible.is_none() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    project(&dir);
    let state = tmp.path().join("state");
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .arg("run")
        .arg(&dir)
        .args([
            "--pipeline",
            "check",
            "--executor",
            executor,
            "--change",
            "42",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--jobs-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs"));
    if let Some(a) = ansible {
        c.env("GANTRY_ANSIBLE", a);
    }
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{executor}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut log = String::new();
    for e in std::fs::read_dir(state.join("builds")).unwrap() {
        log.push_str(&std::fs::read_to_string(e.unwrap().path().join("job-output.txt")).unwrap());
    }
    let at = log
        .find("keys ")
        .unwrap_or_else(|| panic!("{executor}: {log}"));
    let rest = &log[at..];
    Some(rest[..rest.find("commit ").unwrap() + "commit True".len()].to_string())
}

#[test]
fn zuul_has_every_key_zuuls_executor_sets_the_same_under_both_executors() {
    let builtin = line("builtin").unwrap();
    let keys: Vec<&str> = builtin["keys ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .split(',')
        .collect();
    for k in ZUUL_KEYS {
        assert!(keys.contains(k), "zuul.{k} missing: {keys:?}");
    }
    for part in [
        "resources 0",
        "ansible_version 9",
        "post_review False",
        "include_vars 0",
        "refs example/app 42 True",
        "playbooks pre.yaml,vars.yaml projects 0",
        "topic True commit True",
    ] {
        assert!(builtin.contains(part), "{part} not in {builtin}");
    }
    if let Some(ansible) = line("ansible") {
        assert_eq!(
            ansible.split_whitespace().collect::<Vec<_>>(),
            builtin.split_whitespace().collect::<Vec<_>>()
        );
    }
}

/// openstack/kolla's zuul.d/base.yaml (5d77668d) reads its own checkout as
/// `zuul.projects['opendev.org/openstack/kolla'].src_dir` in an extra-var: with
/// `--canonical-hostname opendev.org` (Zuul's connection `canonical_hostname`) the
/// expression resolves, under both executors.
#[test]
fn canonical_hostname_keys_zuul_projects_as_kolla_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kolla");
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(
        dir.join("zuul.yaml"),
        r#"- job:
    name: kolla-vars
    run: playbooks/run.yaml
    extra-vars:
      kolla_build_template_overrides_path: "{{ zuul.executor.work_root }}/\
      {{ zuul.projects['opendev.org/openstack/kolla'].src_dir }}\
      /tests/templates/template_overrides.j2"
- project:
    name: openstack/kolla
    check:
      jobs: [kolla-vars]
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("playbooks/run.yaml"),
        concat!(
            "- hosts: localhost\n  tasks:\n    - debug:\n        msg: >-\n",
            "          canonical {{ zuul.project.canonical_name }}\n",
            "          direct {{ zuul.projects['opendev.org/openstack/kolla'].src_dir == zuul.project.src_dir }}\n",
            "          rendered {{ kolla_build_template_overrides_path.endswith(zuul.project.src_dir + '/tests/templates/template_overrides.j2') }}\n",
        ),
    )
    .unwrap();
    let mut lines = vec![];
    for executor in ["builtin", "ansible"] {
        let ansible = common::venv_tool("ansible-playbook");
        if executor == "ansible" && ansible.is_none() {
            continue;
        }
        let state = tmp.path().join(format!("state-{executor}"));
        let mut c = Command::new(common::gantry_bin());
        c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
            .arg("run")
            .arg(&dir)
            .args(["--pipeline", "check", "--executor", executor])
            .args(["--canonical-hostname", "opendev.org"])
            .arg("--state-dir")
            .arg(&state)
            .arg("--jobs-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs"));
        if let Some(a) = ansible {
            c.env("GANTRY_ANSIBLE", a);
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{executor}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut log = String::new();
        for e in std::fs::read_dir(state.join("builds")).unwrap() {
            log.push_str(
                &std::fs::read_to_string(e.unwrap().path().join("job-output.txt")).unwrap(),
            );
        }
        assert!(
            log.contains("canonical opendev.org/openstack/kolla direct True rendered True"),
            "{executor}: {log}"
        );
        lines.push(executor);
    }
    assert!(!lines.is_empty());
}
