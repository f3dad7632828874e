//! One test per job-graph rule of ZUUL.md §6, the project-stanza rules of §5 and the
//! project-vars rule of §3, each named after its rule, on configurations parsed from YAML
//! text (no files read).

use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::job::freeze::tests::config;

fn graph(yaml: &str) -> JobGraph {
    JobGraph::build(&config(yaml), "project", "check").unwrap_or_else(|e| panic!("{e}"))
}

fn graph_errors(yaml: &str) -> Vec<String> {
    match JobGraph::build(&config(yaml), "project", "check") {
        Ok(_) => panic!("the graph built"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn states(list: &[(&str, BuildState)]) -> HashMap<String, BuildState> {
    list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

/// A configuration defining `jobs` (each running `r.yaml`) and a project whose check
/// pipeline lists `listed` (one YAML list entry each).
fn check(jobs: &[&str], listed: &[&str]) -> String {
    let mut yaml = String::new();
    for job in jobs {
        yaml.push_str(&format!("- job: {{name: {job}, run: r.yaml}}\n"));
    }
    yaml.push_str("- project:\n    check:\n      jobs:\n");
    for entry in listed {
        yaml.push_str(&format!("        - {entry}\n"));
    }
    yaml
}

fn chain() -> String {
    check(
        &["build", "test", "publish"],
        &[
            "build",
            "test: {dependencies: [build]}",
            "publish: {dependencies: [test]}",
        ],
    )
}

#[test]
fn a_dict_entry_under_jobs_is_a_project_local_variant_applied_last() {
    let yaml = "
- job: {name: j, run: r.yaml, vars: {where: job, keep: 1}}
- project:
    check:
      jobs:
        - j: {vars: {where: project-pipeline}}
";
    let g = graph(yaml);
    let job = g.job("j").unwrap();
    assert_eq!(job.vars["where"], json!("project-pipeline"));
    assert_eq!(job.vars["keep"], json!(1));
    assert_eq!(job.inheritance.len(), 2, "{:?}", job.inheritance);
}

#[test]
fn each_pipeline_runs_its_own_job_list() {
    let yaml = "
- job: {name: build, run: r.yaml}
- job: {name: upload, run: r.yaml}
- job: {name: promote, run: r.yaml}
- project:
    check: {jobs: [build]}
    gate: {jobs: [upload, build]}
    promote: {jobs: [promote]}
";
    let c = config(yaml);
    let names = |p: &str| -> Vec<String> {
        JobGraph::build(&c, "project", p)
            .unwrap()
            .jobs()
            .map(|j| j.name.clone())
            .collect()
    };
    assert_eq!(names("check"), ["build"]);
    assert_eq!(names("gate"), ["upload", "build"]);
    assert_eq!(names("promote"), ["promote"]);
}

#[test]
fn job_vars_win_over_project_vars() {
    let yaml = "
- job: {name: j, run: r.yaml, vars: {both: job}}
- project:
    vars: {both: project, only_project: 1}
    check: {jobs: [j]}
";
    let g = graph(yaml);
    let vars = &g.job("j").unwrap().vars;
    assert_eq!(vars["both"], json!("job"));
    assert_eq!(vars["only_project"], json!(1));
}

#[test]
fn a_job_starts_when_every_dependency_succeeded_or_is_paused() {
    let g = graph(&chain());
    assert_eq!(g.ready(&states(&[])), ["build"]);
    assert_eq!(
        g.ready(&states(&[("build", BuildState::Running)])),
        Vec::<&str>::new()
    );
    assert_eq!(g.ready(&states(&[("build", BuildState::Paused)])), ["test"]);
    assert_eq!(
        g.ready(&states(&[(
            "build",
            BuildState::Completed(BuildResult::Success)
        )])),
        ["test"]
    );
    assert_eq!(
        g.ready(&states(&[(
            "build",
            BuildState::Completed(BuildResult::Failure)
        )])),
        Vec::<&str>::new()
    );
}

#[test]
fn a_hard_dependency_not_in_the_graph_is_an_error() {
    let yaml = check(&["build", "publish"], &["publish: {dependencies: [build]}"]);
    assert_eq!(
        graph_errors(&yaml),
        ["Job publish depends on build which was not run."]
    );
}

#[test]
fn a_soft_dependency_not_in_the_graph_is_ignored() {
    let yaml = check(
        &["build", "publish"],
        &["publish: {dependencies: [{name: build, soft: true}]}"],
    );
    let g = graph(&yaml);
    assert!(g.dependencies("publish").is_empty());
    assert_eq!(g.ready(&states(&[])), ["publish"]);
}

#[test]
fn a_dependency_cycle_is_a_config_error_reporting_the_cycle() {
    let yaml = check(
        &["a", "b"],
        &["a: {dependencies: [b]}", "b: {dependencies: [a]}"],
    );
    let errors = graph_errors(&yaml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0] == "Dependency cycle detected: a -> b -> a"
            || errors[0] == "Dependency cycle detected: b -> a -> b",
        "{errors:?}"
    );
}

#[test]
fn a_build_neither_success_nor_skipped_nor_paused_skips_its_dependents_recursively() {
    let g = graph(&chain());
    for result in [
        BuildResult::Failure,
        BuildResult::PostFailure,
        BuildResult::TimedOut,
        BuildResult::Error,
        BuildResult::RetryLimit,
    ] {
        assert_eq!(
            g.to_skip("build", Some(result), false, None),
            Some(Skip {
                jobs: vec!["test".into(), "publish".into()],
                reason: "Skipped due to failed job build".into(),
            }),
            "{result}"
        );
    }
    assert_eq!(
        g.to_skip("build", Some(BuildResult::Success), false, None),
        None
    );
    assert_eq!(
        g.to_skip("build", Some(BuildResult::Skipped), false, None),
        None
    );
    assert_eq!(g.to_skip("build", None, true, None), None, "paused");
}

#[test]
fn child_jobs_skips_the_direct_dependents_it_does_not_name() {
    let yaml = check(
        &["build", "test-a", "test-b", "after-b"],
        &[
            "build",
            "test-a: {dependencies: [build]}",
            "test-b: {dependencies: [build]}",
            "after-b: {dependencies: [test-b]}",
        ],
    );
    let g = graph(&yaml);
    let keep = ["test-a".to_string()];
    let skip = g
        .to_skip("build", Some(BuildResult::Success), false, Some(&keep))
        .unwrap();
    assert_eq!(skip.jobs, ["test-b", "after-b"]);
    assert_eq!(
        skip.reason,
        "Skipped due to child_jobs return value in job build"
    );
}

fn returned(data: serde_json::Value, secret: serde_json::Value) -> Returned {
    Returned {
        data: data.as_object().unwrap().clone(),
        secret_data: secret.as_object().unwrap().clone(),
    }
}

fn diamond() -> String {
    check(
        &["first", "second", "last"],
        &["first", "second", "last: {dependencies: [first, second]}"],
    )
}

#[test]
fn returned_data_reaches_dependents_deep_merged_later_winning_without_the_zuul_key() {
    let g = graph(&diamond());
    let r = HashMap::from([
        (
            "first".to_string(),
            returned(
                json!({"image": {"tag": "one", "repo": "r"}, "zuul": {"pause": true}}),
                json!({}),
            ),
        ),
        (
            "second".to_string(),
            returned(json!({"image": {"tag": "two"}}), json!({})),
        ),
    ]);
    let pd = g.parent_data("last", &r, &ItemRef::default(), vec![]);
    assert_eq!(
        serde_json::Value::Object(pd.data),
        json!({"image": {"tag": "two", "repo": "r"}})
    );
}

#[test]
fn returned_secret_data_is_passed_to_dependents_like_secrets() {
    let g = graph(&diamond());
    let r = HashMap::from([(
        "first".to_string(),
        returned(json!({}), json!({"token": "s3cret", "zuul": {"x": 1}})),
    )]);
    let pd = g.parent_data("last", &r, &ItemRef::default(), vec![]);
    assert_eq!(
        serde_json::Value::Object(pd.secret_data),
        json!({"token": "s3cret"})
    );
    assert!(
        pd.data.is_empty(),
        "secret data stays out of the plain data"
    );
}

#[test]
fn returned_artifacts_are_appended_and_enriched_with_project_change_patchset_job() {
    let g = graph(&diamond());
    let artifact = |name: &str| json!({"zuul": {"artifacts": [{"name": name, "url": format!("https://x/{name}")}]}});
    let r = HashMap::from([
        ("first".to_string(), returned(artifact("a1"), json!({}))),
        ("second".to_string(), returned(artifact("a2"), json!({}))),
    ]);
    let item = ItemRef {
        project: "project".into(),
        branch: Some("main".into()),
        change: Some("42".into()),
        patchset: Some("1".into()),
    };
    let earlier = json!({"name": "from-requires", "url": "https://x/r"});
    let pd = g.parent_data("last", &r, &item, vec![earlier.clone()]);
    assert_eq!(
        pd.artifacts,
        [
            earlier,
            json!({"name": "a1", "url": "https://x/a1", "project": "project", "job": "first",
                   "branch": "main", "change": "42", "patchset": "1"}),
            json!({"name": "a2", "url": "https://x/a2", "project": "project", "job": "second",
                   "branch": "main", "change": "42", "patchset": "1"}),
        ]
    );
}
