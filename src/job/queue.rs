//! Builds, artifacts and `provides`/`requires` across the changes ahead (ZUUL.md §8).
//!
//! Owns: the plain data the runner fills from the registry ([`BuildRecord`], [`Artifact`],
//! [`QueueChange`]) and the decision for a requiring job: wait, run with which
//! `zuul.artifacts`, or fail with Zuul's message. Must not: fetch build records, talk to a
//! registry, or look at the requiring job's own buildset (its own providers reach its
//! dependents through parent data, ZUUL.md §6).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::job::freeze::FrozenJob;

/// The result of a build, spelled as Zuul reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildResult {
    Success,
    Failure,
    PostFailure,
    Skipped,
    TimedOut,
    Error,
    RetryLimit,
    Canceled,
}

impl fmt::Display for BuildResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildResult::Success => "SUCCESS",
            BuildResult::Failure => "FAILURE",
            BuildResult::PostFailure => "POST_FAILURE",
            BuildResult::Skipped => "SKIPPED",
            BuildResult::TimedOut => "TIMED_OUT",
            BuildResult::Error => "ERROR",
            BuildResult::RetryLimit => "RETRY_LIMIT",
            BuildResult::Canceled => "CANCELED",
        })
    }
}

/// `{name, url, metadata}` as returned by a build through `zuul_return`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Json>,
}

/// What is known of one build of a change ahead (stored in the intermediate registry or
/// held by the runner for a buildset in progress).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub job: String,
    pub uuid: String,
    /// `None` while the build is queued or running.
    pub result: Option<BuildResult>,
    /// Paused after a successful run phase (`zuul.pause`): its artifacts are usable.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    pub project: String,
    pub change: Option<String>,
    pub patchset: Option<String>,
    pub pipeline: String,
    /// The frozen job's `provides`.
    #[serde(default)]
    pub provides: Vec<String>,
}

/// One change ahead of the item under test, with the builds of its latest buildset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueChange {
    pub project: String,
    pub change: Option<String>,
    pub patchset: Option<String>,
    pub builds: Vec<BuildRecord>,
}

/// What a requiring job should do now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "decision")]
pub enum Requirements {
    /// Start; `artifacts` become `zuul.artifacts`, furthest-ahead change first.
    Run { artifacts: Vec<Json> },
    /// A providing build ahead is still running (and not paused).
    Wait { job: String, uuid: String },
    /// A providing build ahead failed: the requiring job fails with this message.
    Fail { message: String },
}

/// Decide for `job` given the changes ahead of its change, furthest first and nearest
/// last (queue order). Only builds of `pipeline` count.
///
/// 1. Walk the changes from the nearest to the furthest.
/// 2. In each, every build whose `provides` meets `job.requires`: still running → wait;
///    finished but not SUCCESS → fail with Zuul's message; otherwise take its artifacts,
///    each enriched with `project, change, patchset, job`.
/// 3. Order the collected artifacts furthest change first, so a consumer applying them in
///    order ends with the nearest change winning for the same `repository:tag`.
///
/// A change with no providing build contributes nothing (it merged, or never built).
pub fn resolve_requirements(
    job: &FrozenJob,
    pipeline: &str,
    ahead: &[QueueChange],
) -> Requirements {
    resolve(&job.name, &job.requires, pipeline, ahead)
}

/// [`resolve_requirements`] on plain names, for callers without a frozen job.
pub fn resolve(
    job: &str,
    requires: &BTreeSet<String>,
    pipeline: &str,
    ahead: &[QueueChange],
) -> Requirements {
    if requires.is_empty() {
        return Requirements::Run { artifacts: vec![] };
    }
    let mut per_change: Vec<Vec<Json>> = vec![];
    for change in ahead.iter().rev() {
        let mut found = vec![];
        for build in &change.builds {
            if build.pipeline != pipeline {
                continue;
            }
            let mut provided: Vec<&str> = build
                .provides
                .iter()
                .filter(|p| requires.contains(*p))
                .map(String::as_str)
                .collect();
            if provided.is_empty() {
                continue;
            }
            provided.sort_unstable();
            provided.dedup();
            match build.result {
                None if !build.paused => {
                    return Requirements::Wait {
                        job: build.job.clone(),
                        uuid: build.uuid.clone(),
                    };
                }
                Some(result) if result != BuildResult::Success => {
                    let change_id = build.change.as_ref().or(change.change.as_ref());
                    return Requirements::Fail {
                        message: format!(
                            "Job {job} requires artifact(s) {} provided by build {} (triggered by change {} on project {}), but that build failed with result \"{result}\"",
                            provided.join(", "),
                            build.uuid,
                            change_id.map_or("None", String::as_str),
                            build.project,
                        ),
                    };
                }
                _ => {}
            }
            for a in &build.artifacts {
                found.push(enrich(a, build, change));
            }
        }
        per_change.push(found);
    }
    Requirements::Run {
        artifacts: per_change.into_iter().rev().flatten().collect(),
    }
}

/// The artifacts a build returned: `data.zuul.artifacts`, entries that fit the schema
/// `{name: str, url: str, metadata: map?}` (others are ignored, as Zuul logs and skips them).
pub fn artifacts_in(data: &Map<String, Json>) -> Vec<Artifact> {
    let Some(list) = data
        .get("zuul")
        .and_then(|z| z.get("artifacts"))
        .and_then(Json::as_array)
    else {
        return vec![];
    };
    list.iter()
        .filter_map(|a| {
            let name = a.get("name")?.as_str()?.to_string();
            let url = a.get("url")?.as_str()?.to_string();
            let metadata = match a.get("metadata") {
                None => None,
                Some(m) if m.is_object() => Some(m.clone()),
                Some(_) => return None,
            };
            Some(Artifact {
                name,
                url,
                metadata,
            })
        })
        .collect()
}

fn enrich(a: &Artifact, build: &BuildRecord, change: &QueueChange) -> Json {
    let mut m = Map::new();
    m.insert("name".into(), Json::String(a.name.clone()));
    m.insert("url".into(), Json::String(a.url.clone()));
    if let Some(meta) = &a.metadata {
        m.insert("metadata".into(), meta.clone());
    }
    let opt = |v: Option<&String>| v.map_or(Json::Null, |s| Json::String(s.clone()));
    m.insert("project".into(), Json::String(build.project.clone()));
    m.insert(
        "change".into(),
        opt(build.change.as_ref().or(change.change.as_ref())),
    );
    m.insert(
        "patchset".into(),
        opt(build.patchset.as_ref().or(change.patchset.as_ref())),
    );
    m.insert("job".into(), Json::String(build.job.clone()));
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(
        job: &str,
        uuid: &str,
        change: &str,
        result: Option<BuildResult>,
        artifacts: &[&str],
    ) -> BuildRecord {
        BuildRecord {
            job: job.into(),
            uuid: uuid.into(),
            result,
            paused: false,
            artifacts: artifacts
                .iter()
                .map(|n| Artifact {
                    name: n.to_string(),
                    url: format!("docker://reg/{n}"),
                    metadata: Some(serde_json::json!({"type": "container_image"})),
                })
                .collect(),
            project: "org/app".into(),
            change: Some(change.into()),
            patchset: Some("1".into()),
            pipeline: "gate".into(),
            provides: vec!["docker-image".into()],
        }
    }

    fn change(n: &str, builds: Vec<BuildRecord>) -> QueueChange {
        QueueChange {
            project: "org/app".into(),
            change: Some(n.into()),
            patchset: Some("1".into()),
            builds,
        }
    }

    fn requires() -> BTreeSet<String> {
        ["docker-image".to_string()].into()
    }

    #[test]
    fn furthest_first_enriched() {
        let ahead = vec![
            change(
                "1",
                vec![build(
                    "build",
                    "u1",
                    "1",
                    Some(BuildResult::Success),
                    &["app:latest"],
                )],
            ),
            change(
                "2",
                vec![build(
                    "build",
                    "u2",
                    "2",
                    Some(BuildResult::Success),
                    &["app:latest", "app:v2"],
                )],
            ),
        ];
        let Requirements::Run { artifacts } = resolve("consumer", &requires(), "gate", &ahead)
        else {
            panic!()
        };
        let summary: Vec<String> = artifacts
            .iter()
            .map(|a| {
                format!(
                    "{}@{}:{}",
                    a["name"].as_str().unwrap(),
                    a["change"].as_str().unwrap(),
                    a["job"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            summary,
            ["app:latest@1:build", "app:latest@2:build", "app:v2@2:build"]
        );
        assert_eq!(artifacts[0]["metadata"]["type"], "container_image");
        assert_eq!(artifacts[0]["project"], "org/app");
        assert_eq!(artifacts[0]["patchset"], "1");
    }

    #[test]
    fn running_provider_waits_paused_counts() {
        let mut running = build("build", "u2", "2", None, &["x"]);
        let ahead = vec![change("2", vec![running.clone()])];
        assert_eq!(
            resolve("c", &requires(), "gate", &ahead),
            Requirements::Wait {
                job: "build".into(),
                uuid: "u2".into()
            }
        );
        running.paused = true;
        let ahead = vec![change("2", vec![running])];
        assert!(
            matches!(resolve("c", &requires(), "gate", &ahead), Requirements::Run { artifacts } if artifacts.len() == 1)
        );
    }

    #[test]
    fn failed_provider_fails_with_zuul_message() {
        let ahead = vec![change(
            "7",
            vec![build(
                "build",
                "abc123",
                "7",
                Some(BuildResult::Failure),
                &[],
            )],
        )];
        assert_eq!(
            resolve("consumer", &requires(), "gate", &ahead),
            Requirements::Fail {
                message: "Job consumer requires artifact(s) docker-image provided by build abc123 (triggered by change 7 on project org/app), but that build failed with result \"FAILURE\"".into()
            }
        );
    }

    #[test]
    fn nothing_ahead_or_other_pipeline_or_no_requires() {
        assert_eq!(
            resolve("c", &requires(), "gate", &[]),
            Requirements::Run { artifacts: vec![] }
        );
        let ahead = vec![change(
            "1",
            vec![build("build", "u1", "1", Some(BuildResult::Failure), &[])],
        )];
        assert_eq!(
            resolve("c", &requires(), "check", &ahead),
            Requirements::Run { artifacts: vec![] }
        );
        assert_eq!(
            resolve("c", &BTreeSet::new(), "gate", &ahead),
            Requirements::Run { artifacts: vec![] }
        );
    }
}
