//! `gantry playbook check`: what the built-in interpreter would refuse, with file:line,
//! before a run; exit 0 when it runs everything, 1 when not, 2 for a missing file.

use std::process::Command;

use crate::common;

fn check(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::gantry_bin())
        .args(["playbook", "check"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn playbook_check_lists_what_the_builtin_interpreter_does_not_support() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("zuul.yaml"), "- job: {name: app}\n").unwrap();
    std::fs::create_dir_all(d.join("playbooks")).unwrap();
    std::fs::write(
        d.join("playbooks/ok.yaml"),
        "- hosts: all\n  roles:\n    - build-container-image\n  tasks:\n    - debug:\n        msg: \"{{ '%s-%02d' % ('v', 1) }}\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("playbooks/bad.yaml"),
        "- hosts: all\n  tasks:\n    - name: ok\n      debug: {msg: hi}\n    - community.docker.docker_image:\n        name: app\n",
    )
    .unwrap();

    let (code, out, _) = check(d, &["playbooks/ok.yaml"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("playbooks/ok.yaml: ok"), "{out}");
    assert!(
        out.contains("the built-in interpreter runs them all"),
        "{out}"
    );

    let (code, out, _) = check(d, &["playbooks/ok.yaml", "playbooks/bad.yaml"]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("bad.yaml:5:"))
        .unwrap_or_else(|| panic!("no bad.yaml:5 line in {out}"));
    assert!(line.contains("community.docker.docker_image"), "{line}");
    assert!(out.contains("1 of 2 playbook(s)"), "{out}");

    let (code, out, err) = check(d, &["playbooks/nope.yaml"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("playbooks/nope.yaml: no such playbook file"),
        "{err}"
    );
}
