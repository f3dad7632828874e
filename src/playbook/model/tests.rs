//! Unit tests of the playbook model.

use super::*;

fn parse_tasks(text: &str) -> (Vec<Task>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.yaml");
    std::fs::write(&path, text).unwrap();
    let files = Files {
        project_dir: dir.path().to_path_buf(),
        role_paths: Vec::new(),
    };
    match files.tasks(&path) {
        Ok(t) => (t, Vec::new()),
        Err(e) => (Vec::new(), e.iter().map(ToString::to_string).collect()),
    }
}

#[test]
fn modules_with_prefix_and_free_form() {
    let (tasks, errors) = parse_tasks(
        "- ansible.builtin.shell: echo hi\n  args: {chdir: /tmp}\n- debug: msg=\"a b\" verbosity=0\n- command:\n    argv: [ls, -l]\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let Action::Module { module, args } = &tasks[0].action else {
        panic!()
    };
    assert_eq!(*module, Module::Shell);
    assert_eq!(args["_raw_params"], "echo hi");
    assert_eq!(args["chdir"], "/tmp");
    let Action::Module { args, .. } = &tasks[1].action else {
        panic!()
    };
    assert_eq!(args["msg"], "a b");
    assert_eq!(tasks[2].pos.line, 4);
}

#[test]
fn unknown_module_and_keyword_suggest() {
    let (_, errors) = parse_tasks("- name: x\n  shel: echo hi\n- shell: echo\n  whne: true\n");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("tasks.yaml:2:3: unknown module \"shel\" (did you mean \"shell\"?); supported modules: shell, command"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1]
            .starts_with("tasks.yaml:4:3: unknown task keyword \"whne\" (did you mean \"when\"?)"),
        "{}",
        errors[1]
    );
}

#[test]
fn bad_parameters_and_missing_ones() {
    let (_, errors) = parse_tasks("- copy: {dset: x, content: y}\n- file: {}\n- shell:\n");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0]
            .contains("unsupported parameter \"dset\" for module copy (did you mean \"dest\"?)")
    );
    assert!(errors[1].contains("module copy needs parameter dest"));
    assert!(errors[2].contains("module file needs parameter path or dest or name"));
    assert!(errors[3].contains("module shell needs a command cmd"));
}

#[test]
fn blocks_loops_and_includes() {
    let (tasks, errors) = parse_tasks(
        "- block:\n    - debug: {msg: a}\n  rescue:\n    - debug: {msg: b}\n  always:\n    - debug: {msg: c}\n- include_role: {name: r, tasks_from: other}\n  loop: [1, 2]\n  loop_control: {loop_var: x, label: '{{ x }}'}\n- include_tasks: more.yaml\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let Action::Block {
        block,
        rescue,
        always,
    } = &tasks[0].action
    else {
        panic!()
    };
    assert_eq!((block.len(), rescue.len(), always.len()), (1, 1, 1));
    assert!(
        matches!(&tasks[1].action, Action::Role { name, tasks_from: Some(t), .. } if name == "r" && t == "other")
    );
    assert_eq!(tasks[1].looping.as_ref().unwrap().var, "x");
    assert!(matches!(&tasks[2].action, Action::Tasks { file, .. } if file == "more.yaml"));
}

#[test]
fn misplaced_and_conflicting() {
    let (_, errors) =
        parse_tasks("- shell: a\n  command: b\n- debug: {msg: x}\n  rescue: []\n- name: nothing\n");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("conflicting action statements: shell, command"));
    assert!(errors[1].contains("rescue and always belong to a block"));
    assert!(errors[2].contains("a task needs an action"));
}

#[test]
fn modes_are_read_as_pyyaml_reads_them() {
    // PyYAML: a leading zero is octal (0755 = 493); Ansible's file modules take the int.
    let (tasks, _) = parse_tasks("- file: {path: x, mode: 0755}\n- file: {path: x, mode: 493}\n");
    let Action::Module { args, .. } = &tasks[0].action else {
        panic!()
    };
    assert_eq!(args["mode"], 493);
    let Action::Module { args, .. } = &tasks[1].action else {
        panic!()
    };
    assert_eq!(args["mode"], 493);
}

#[test]
fn key_value_pairs() {
    let kv = key_values("msg=\"hello {{ a }}\" path={{ b | default('x y') }} n=1").unwrap();
    assert_eq!(kv["msg"], "hello {{ a }}");
    assert_eq!(kv["path"], "{{ b | default('x y') }}");
    assert_eq!(kv["n"], "1");
    assert!(key_values("just words").is_none());
}
