//! One test per freezing rule of ZUUL.md §2 (and the project-vars rule of §3), each named
//! after its rule, on configurations parsed from YAML text (no files read).

use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::job::config::{LoadOptions, SourceFile};

/// A configuration of one project file (`zuul.yaml` of project `project`); the graph tests
/// use it too.
pub(crate) fn config(yaml: &str) -> Config {
    Config::from_sources(
        vec![SourceFile {
            display: "zuul.yaml".into(),
            text: yaml.into(),
            origin: Origin::Project,
            root: PathBuf::from("/project"),
            repo: None,
        }],
        &LoadOptions {
            project_name: Some("project".into()),
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn frozen(yaml: &str, name: &str) -> FrozenJob {
    freeze_job(&config(yaml), name).unwrap_or_else(|e| panic!("{e}"))
}

fn paths(playbooks: &[FrozenPlaybook]) -> Vec<&str> {
    playbooks.iter().map(|p| p.path.as_str()).collect()
}

/// The job names of `inheritance` (`job@file:line`).
fn chain(job: &FrozenJob) -> Vec<&str> {
    job.inheritance
        .iter()
        .map(|s| s.split('@').next().unwrap_or_default())
        .collect()
}

const FAMILY: &str = "
- job: {name: grandparent, run: gp-run.yaml}
- job: {name: parent, parent: grandparent}
- job: {name: child, parent: parent}
";

#[test]
fn variants_are_collected_parent_first_from_the_root_ancestor() {
    let job = frozen(FAMILY, "child");
    assert_eq!(chain(&job), ["grandparent", "parent", "child"]);
}

#[test]
fn a_job_without_parent_inherits_base_and_parent_null_makes_a_base_job() {
    let yaml = "
- job: {name: base, parent: null, pre-run: base-pre.yaml}
- job: {name: plain, run: run.yaml}
";
    assert_eq!(chain(&frozen(yaml, "plain")), ["base", "plain"]);
    assert_eq!(chain(&frozen(yaml, "base")), ["base"]);
}

#[test]
fn later_variants_of_the_same_job_apply_in_order() {
    let yaml = "
- job: {name: j, run: first.yaml, vars: {v: 1}}
- job: {name: j, vars: {v: 2}}
";
    let job = frozen(yaml, "j");
    assert_eq!(paths(&job.run), ["first.yaml"]);
    assert_eq!(job.vars["v"], json!(2));
}

const PLAYBOOKS: &str = "
- job:
    name: parent
    pre-run: parent-pre.yaml
    run: parent-run.yaml
    post-run: parent-post.yaml
- job:
    name: child
    parent: parent
    pre-run: child-pre.yaml
    post-run: child-post.yaml
";

#[test]
fn pre_run_is_parent_then_child_appended() {
    let job = frozen(PLAYBOOKS, "child");
    assert_eq!(paths(&job.pre_run), ["parent-pre.yaml", "child-pre.yaml"]);
}

#[test]
fn post_run_is_child_then_parent_prepended() {
    let job = frozen(PLAYBOOKS, "child");
    assert_eq!(
        paths(&job.post_run),
        ["child-post.yaml", "parent-post.yaml"]
    );
}

#[test]
fn run_is_kept_from_the_parent_and_replaced_when_the_child_sets_it() {
    assert_eq!(paths(&frozen(PLAYBOOKS, "child").run), ["parent-run.yaml"]);
    let yaml =
        format!("{PLAYBOOKS}- job: {{name: grandchild, parent: child, run: own-run.yaml}}\n");
    assert_eq!(paths(&frozen(&yaml, "grandchild").run), ["own-run.yaml"]);
}

#[test]
fn run_may_be_a_list_and_every_playbook_is_kept() {
    let yaml = "- job: {name: j, run: [one.yaml, two.yaml]}";
    assert_eq!(paths(&frozen(yaml, "j").run), ["one.yaml", "two.yaml"]);
}

#[test]
fn execution_order_is_parent_pre_child_pre_run_child_post_parent_post_with_levels() {
    let job = frozen(PLAYBOOKS, "child");
    let order: Vec<(&str, usize)> = job
        .playbooks()
        .map(|p| (p.path.as_str(), p.nesting_level))
        .collect();
    assert_eq!(
        order,
        [
            ("parent-pre.yaml", 0),
            ("child-pre.yaml", 1),
            ("parent-run.yaml", 0),
            ("child-post.yaml", 1),
            ("parent-post.yaml", 0),
        ]
    );
}

#[test]
fn a_playbook_entry_is_a_path_or_a_mapping_with_cleanup_and_semaphores() {
    let yaml = "
- job:
    name: j
    run: run.yaml
    post-run:
      - plain.yaml
      - {name: tidy.yaml, cleanup: true, semaphores: [lock]}
    cleanup-run: always.yaml
";
    let job = frozen(yaml, "j");
    assert_eq!(paths(&job.post_run), ["plain.yaml", "tidy.yaml"]);
    assert!(!job.post_run[0].cleanup && job.post_run[1].cleanup);
    assert_eq!(job.post_run[1].semaphores, ["lock"]);
    assert_eq!(paths(&job.cleanup_run), ["always.yaml"]);
}

#[test]
fn vars_are_deep_merged_with_the_child_winning_on_leaves() {
    let yaml = "
- job:
    name: parent
    run: r.yaml
    vars: {image: {repo: base, tag: v1}, keep: 1}
    extra-vars: {e: {a: 1}}
- job:
    name: child
    parent: parent
    vars: {image: {tag: v2}}
    extra-vars: {e: {b: 2}}
";
    let job = frozen(yaml, "child");
    assert_eq!(
        serde_json::Value::Object(job.vars),
        json!({"image": {"repo": "base", "tag": "v2"}, "keep": 1})
    );
    assert_eq!(
        serde_json::Value::Object(job.extra_vars),
        json!({"e": {"a": 1, "b": 2}})
    );
}

#[test]
fn override_tag_replaces_vars_instead_of_merging() {
    let yaml = "
- job: {name: parent, run: r.yaml, vars: {image: {repo: base, tag: v1}, keep: 1}}
- job:
    name: child
    parent: parent
    vars: !override {image: {tag: v2}}
";
    let job = frozen(yaml, "child");
    assert_eq!(
        serde_json::Value::Object(job.vars),
        json!({"image": {"tag": "v2"}})
    );
}

#[test]
fn provides_requires_and_tags_are_unions() {
    let yaml = "
- job: {name: parent, run: r.yaml, provides: [a], requires: [x], tags: [t1]}
- job: {name: child, parent: parent, provides: [b], requires: [y], tags: [t2]}
";
    let job = frozen(yaml, "child");
    let set = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    assert_eq!(set(&job.provides), ["a", "b"]);
    assert_eq!(set(&job.requires), ["x", "y"]);
    assert_eq!(set(&job.tags), ["t1", "t2"]);
}

#[test]
fn dependencies_and_files_are_replaced() {
    let yaml = "
- job: {name: d1, run: r.yaml}
- job: {name: d2, run: r.yaml}
- job: {name: parent, run: r.yaml, dependencies: [d1], files: [parent/.*]}
- job: {name: child, parent: parent, dependencies: [d2], files: [child/.*]}
";
    let job = frozen(yaml, "child");
    let deps: Vec<&str> = job.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["d2"]);
    assert_eq!(job.files, ["child/.*"]);
}

#[test]
fn a_final_job_refuses_a_child_or_a_later_variant_setting_an_execution_attribute() {
    let child = "
- job: {name: locked, final: true, run: r.yaml}
- job: {name: child, parent: locked}
";
    let err = freeze_job(&config(child), "child").unwrap_err();
    assert!(matches!(err, FreezeError::Final { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Unable to modify final job locked attribute parent"
    );
    let variant = "
- job: {name: locked, final: true, run: r.yaml}
- job: {name: locked, vars: {x: 1}}
";
    let err = freeze_job(&config(variant), "locked").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Unable to modify final job locked attribute vars"
    );
}

#[test]
fn a_job_still_abstract_after_freezing_cannot_run() {
    let yaml = "
- job: {name: template, abstract: true, run: r.yaml}
- job: {name: concrete, parent: template}
";
    assert_eq!(
        frozen(yaml, "template").run_error().as_deref(),
        Some("Job template is abstract and may not be directly run")
    );
    assert_eq!(frozen(yaml, "concrete").run_error(), None);
}

const SECRETS: &str = "
- secret: {name: parent-creds, data: {user: p}}
- secret: {name: child-creds, data: {user: c}}
- job:
    name: parent
    run: parent-run.yaml
    post-run: parent-post.yaml
    secrets: [{secret: parent-creds, name: creds}]
- job:
    name: child
    parent: parent
    pre-run: child-pre.yaml
    secrets: [{secret: child-creds, name: mine}]
";

fn bound(p: &FrozenPlaybook) -> Vec<(&str, &str)> {
    p.secrets
        .iter()
        .map(|s| (s.name.as_str(), s.secret.as_str()))
        .collect()
}

#[test]
fn secrets_are_not_inherited_but_bound_to_the_playbooks_of_their_definition() {
    let job = frozen(SECRETS, "child");
    assert_eq!(bound(&job.pre_run[0]), [("mine", "child-creds")]);
    assert_eq!(bound(&job.run[0]), [("creds", "parent-creds")]);
    assert_eq!(bound(&job.post_run[0]), [("creds", "parent-creds")]);
}

#[test]
fn pass_to_parent_gives_secrets_to_the_parents_playbooks_where_the_parents_own_wins() {
    let yaml = "
- secret: {name: parent-creds, data: {user: p}}
- secret: {name: child-creds, data: {user: c}}
- secret: {name: shared-child, data: {user: s}}
- job:
    name: parent
    run: parent-run.yaml
    secrets: [{secret: parent-creds, name: creds}]
- job:
    name: child
    parent: parent
    pre-run: child-pre.yaml
    secrets:
      - {secret: child-creds, name: creds, pass-to-parent: true}
      - {secret: shared-child, name: shared, pass-to-parent: true}
";
    let job = frozen(yaml, "child");
    let mut parent = bound(&job.run[0]);
    parent.sort();
    assert_eq!(
        parent,
        [("creds", "parent-creds"), ("shared", "shared-child")],
        "the parent's own `creds` wins; `shared` is passed up"
    );
    let mut child = bound(&job.pre_run[0]);
    child.sort();
    assert_eq!(
        child,
        [("creds", "child-creds"), ("shared", "shared-child")]
    );
}

#[test]
fn attempts_default_to_three() {
    assert_eq!(frozen(FAMILY, "child").attempts, 3);
    let yaml = "- job: {name: j, run: r.yaml, attempts: 1}";
    assert_eq!(frozen(yaml, "j").attempts, 1);
}

#[test]
fn an_inheritance_cycle_is_an_error_naming_the_path() {
    let yaml = "
- job: {name: a, parent: b, run: r.yaml}
- job: {name: b, parent: a}
";
    let files = vec![SourceFile {
        display: "zuul.yaml".into(),
        text: yaml.into(),
        origin: Origin::Project,
        root: PathBuf::from("/project"),
        repo: None,
    }];
    // Found when the configuration loads, before anything is frozen.
    let err = Config::from_sources(files, &LoadOptions::default())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a -> b -> a") || err.contains("b -> a -> b"),
        "{err}"
    );
}
