//! The `job` stanza (and the job variants inside project pipelines).
//!
//! Owns: turning one job mapping into a [`JobDef`] — one *variant*, with the position of
//! every attribute it sets. Must not: look at other stanzas (cross references are checked in
//! `validate`) or apply inheritance (that is `job::freeze`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::check::Checker;
pub use super::job_content::{PlaybookDef, SecretUse, Vars};
use super::job_content::{playbooks, secrets, vars};
use super::{Loc, Source};
use crate::job::matchers::Matcher;
use crate::text::yaml::{Node, Value};

/// Every attribute Zuul 14 accepts on a job. gantry acts on the ones ZUUL.md §2 lists and
/// keeps the others (see `docs/zuul-compat.md`).
pub(crate) const JOB_ATTRIBUTES: &[&str] = &[
    "name",
    "parent",
    "abstract",
    "final",
    "protected",
    "intermediate",
    "description",
    "variant-description",
    "pre-run",
    "run",
    "post-run",
    "cleanup-run",
    "vars",
    "extra-vars",
    "host-vars",
    "group-vars",
    "include-vars",
    "secrets",
    "nodeset",
    "timeout",
    "pre-timeout",
    "post-timeout",
    "attempts",
    "dependencies",
    "provides",
    "requires",
    "tags",
    "files",
    "irrelevant-files",
    "branches",
    "voting",
    "semaphore",
    "semaphores",
    "required-projects",
    "roles",
    "allowed-projects",
    "override-branch",
    "override-checkout",
    "post-review",
    "success-message",
    "failure-message",
    "success-url",
    "failure-url",
    "hold-following-changes",
    "ansible-version",
    "ansible-split-streams",
    "match-on-config-updates",
    "workspace-scheme",
    "workspace-checkout",
    "deduplicate",
    "failure-output",
    "image-build-name",
    "attribute-control",
    "include-projects",
    "exclude-projects",
    "type",
];

/// Attributes that change how a job runs: a `final` job refuses them from later variants
/// and children (Zuul's `execution_attributes`, less final/abstract/protected/intermediate).
pub const EXECUTION_ATTRIBUTES: &[&str] = &[
    "parent",
    "pre-timeout",
    "timeout",
    "post-timeout",
    "vars",
    "extra-vars",
    "host-vars",
    "group-vars",
    "include-vars",
    "nodeset",
    "pre-run",
    "post-run",
    "cleanup-run",
    "run",
    "ansible-split-streams",
    "ansible-version",
    "semaphore",
    "semaphores",
    "attempts",
    "roles",
    "required-projects",
    "allowed-projects",
    "override-branch",
    "override-checkout",
    "post-review",
    "workspace-scheme",
    "workspace-checkout",
    "failure-output",
    "image-build-name",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub name: String,
    pub soft: bool,
}

/// A list attribute with its `!override` / `!inherit` choice (`None`: the default).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListAttr<T> {
    pub items: Vec<T>,
    pub override_: Option<bool>,
}

/// One job variant as written. `None` means "not set by this variant".
#[derive(Debug, Serialize)]
pub struct JobDef {
    pub name: String,
    /// Where the stanza starts.
    pub loc: Loc,
    #[serde(skip)]
    pub source: Arc<Source>,
    /// True for a job entry inside a project pipeline (a project-pipeline variant).
    pub project_pipeline: bool,
    /// Every attribute this variant sets, with its position (for `final` and provenance).
    pub set: BTreeMap<String, Loc>,
    /// `Some(None)` is `parent: null`: a base job.
    pub parent: Option<Option<String>>,
    pub abstract_: Option<bool>,
    pub final_: Option<bool>,
    pub protected: Option<bool>,
    pub intermediate: Option<bool>,
    pub description: Option<String>,
    pub voting: Option<bool>,
    pub pre_run: Option<Vec<PlaybookDef>>,
    pub run: Option<Vec<PlaybookDef>>,
    pub post_run: Option<Vec<PlaybookDef>>,
    pub cleanup_run: Option<Vec<PlaybookDef>>,
    pub vars: Option<Vars>,
    pub extra_vars: Option<Vars>,
    pub host_vars: Option<Vars>,
    pub group_vars: Option<Vars>,
    pub secrets: Vec<SecretUse>,
    /// A nodeset name or an anonymous nodeset (kept as written; gantry runs on one host).
    pub nodeset: Option<serde_json::Value>,
    pub timeout: Option<u64>,
    pub pre_timeout: Option<u64>,
    pub post_timeout: Option<u64>,
    pub attempts: Option<u64>,
    pub dependencies: Option<ListAttr<Dependency>>,
    pub provides: Option<ListAttr<String>>,
    pub requires: Option<ListAttr<String>>,
    pub tags: Option<ListAttr<String>>,
    pub files: Option<ListAttr<Matcher>>,
    pub irrelevant_files: Option<ListAttr<Matcher>>,
    pub branches: Option<Vec<Matcher>>,
    pub semaphores: Option<Vec<String>>,
    pub roles: Option<Vec<serde_json::Value>>,
    pub required_projects: Option<ListAttr<serde_json::Value>>,
    /// `attribute-control: {X: {final: true}}`: attributes no later variant may change.
    pub final_attributes: Vec<String>,
    /// Accepted Zuul attributes gantry keeps but does not act on, as written.
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Zuul's built-in `noop` job: no parent, no playbook; a build of it succeeds at once.
pub(crate) fn noop() -> Arc<JobDef> {
    let source = Arc::new(Source {
        file: "<built-in>".into(),
        origin: super::Origin::Library,
        root: std::path::PathBuf::new(),
        repo: None,
    });
    let loc = Loc {
        file: source.file.clone(),
        line: 0,
        column: 0,
    };
    let mut job = JobDef::empty("noop".into(), loc, source, false);
    job.parent = Some(None);
    job.description = Some("Zuul's built-in job: runs nothing and succeeds.".into());
    Arc::new(job)
}

impl JobDef {
    fn empty(name: String, loc: Loc, source: Arc<Source>, project_pipeline: bool) -> JobDef {
        JobDef {
            name,
            loc,
            source,
            project_pipeline,
            set: BTreeMap::new(),
            parent: None,
            abstract_: None,
            final_: None,
            protected: None,
            intermediate: None,
            description: None,
            voting: None,
            pre_run: None,
            run: None,
            post_run: None,
            cleanup_run: None,
            vars: None,
            extra_vars: None,
            host_vars: None,
            group_vars: None,
            secrets: vec![],
            nodeset: None,
            timeout: None,
            pre_timeout: None,
            post_timeout: None,
            attempts: None,
            dependencies: None,
            provides: None,
            requires: None,
            tags: None,
            files: None,
            irrelevant_files: None,
            branches: None,
            semaphores: None,
            roles: None,
            required_projects: None,
            final_attributes: vec![],
            other: BTreeMap::new(),
        }
    }

    /// The parent this variant names; `None` if it names none or is a base job.
    pub fn parent_name(&self) -> Option<&str> {
        self.parent.as_ref().and_then(|p| p.as_deref())
    }

    /// True for `parent: null`.
    pub fn is_base(&self) -> bool {
        matches!(self.parent, Some(None))
    }
}

/// Parse a `job` stanza body, or (with `name` given) a project-pipeline job variant.
pub(crate) fn parse_job(
    ck: &mut Checker<'_>,
    node: &Node,
    source: &Arc<Source>,
    pipeline_job: Option<(&str, &Node)>,
) -> Option<JobDef> {
    let what = if pipeline_job.is_some() {
        "a project-pipeline job"
    } else {
        "a job"
    };
    let allowed: Vec<&str> = if pipeline_job.is_some() {
        JOB_ATTRIBUTES
            .iter()
            .copied()
            .filter(|a| *a != "name")
            .collect()
    } else {
        JOB_ATTRIBUTES.to_vec()
    };
    let fields = ck.fields(node, what, &allowed)?;
    let (name, loc) = match pipeline_job {
        Some((name, key)) => (name.to_string(), ck.loc(key.mark)),
        None => {
            let Some((_, _, v)) = fields.iter().find(|(k, _, _)| *k == "name") else {
                ck.error(node.mark, "a job needs a \"name\"");
                return None;
            };
            let name = ck.string(v, "name")?;
            ck.stanza = format!("job \"{name}\"");
            (name, ck.loc(node.mark))
        }
    };
    let mut job = JobDef::empty(name, loc, source.clone(), pipeline_job.is_some());
    for (key, knode, v) in fields {
        if key == "name" {
            continue;
        }
        job.set.insert(key.to_string(), ck.loc(knode.mark));
        parse_attribute(ck, &mut job, key, v);
    }
    if job.intermediate == Some(true) && job.abstract_ != Some(true) {
        ck.error(node.mark, "an intermediate job must also be abstract");
    }
    Some(job)
}

fn parse_attribute(ck: &mut Checker<'_>, job: &mut JobDef, key: &str, v: &Node) {
    match key {
        "parent" => {
            ck.no_tag(v, key);
            job.parent = match &v.value {
                Value::Null => Some(None),
                Value::Str(s) => Some(Some(s.clone())),
                _ => {
                    ck.error(
                        v.mark,
                        format!("\"parent\" must be a job name or null, found {}", v.kind()),
                    );
                    None
                }
            }
        }
        "abstract" => job.abstract_ = ck.boolean(v, key),
        "final" => job.final_ = ck.boolean(v, key),
        "protected" => job.protected = ck.boolean(v, key),
        "intermediate" => job.intermediate = ck.boolean(v, key),
        "voting" => job.voting = ck.boolean(v, key),
        "description" => job.description = ck.string(v, key),
        "pre-run" => job.pre_run = Some(playbooks(ck, v, key, false)),
        "run" => job.run = Some(playbooks(ck, v, key, false)),
        "post-run" => job.post_run = Some(playbooks(ck, v, key, true)),
        "cleanup-run" => job.cleanup_run = Some(playbooks(ck, v, key, false)),
        "vars" => job.vars = vars(ck, v, key),
        "extra-vars" => job.extra_vars = vars(ck, v, key),
        "host-vars" | "group-vars" => {
            let parsed = vars(ck, v, key);
            if let Some(parsed) = &parsed {
                for (host, hv) in &parsed.map {
                    if !hv.is_object() {
                        ck.error(v.mark, format!("\"{key}\" of \"{host}\" must be a mapping"));
                    } else if hv.get("zuul").is_some() || hv.get("nodepool").is_some() {
                        ck.error(
                            v.mark,
                            "Variables named 'zuul' or 'nodepool' are not allowed.",
                        );
                    }
                }
            }
            if key == "host-vars" {
                job.host_vars = parsed;
            } else {
                job.group_vars = parsed;
            }
        }
        "secrets" => job.secrets = secrets(ck, v),
        "nodeset" => {
            ck.no_tag(v, key);
            match &v.value {
                Value::Str(_) | Value::Map(_) => job.nodeset = Some(v.to_json()),
                _ => ck.error(
                    v.mark,
                    format!(
                        "\"nodeset\" must be a nodeset name or a mapping, found {}",
                        v.kind()
                    ),
                ),
            }
        }
        "timeout" => job.timeout = ck.unsigned(v, key),
        "pre-timeout" => job.pre_timeout = ck.unsigned(v, key),
        "post-timeout" => job.post_timeout = ck.unsigned(v, key),
        "attempts" => job.attempts = ck.unsigned(v, key),
        "dependencies" => {
            let override_ = ck.override_tag(v, key);
            let mut items = vec![];
            for item in ck.items(v) {
                match &item.value {
                    Value::Str(s) => items.push(Dependency {
                        name: s.clone(),
                        soft: false,
                    }),
                    Value::Map(_) => {
                        let Some(fields) = ck.fields(item, "a dependency", &["name", "soft"])
                        else {
                            continue;
                        };
                        let mut name = None;
                        let mut soft = false;
                        for (k, _, fv) in fields {
                            match k {
                                "name" => name = ck.string(fv, "dependencies.name"),
                                _ => soft = ck.boolean(fv, "dependencies.soft").unwrap_or(false),
                            }
                        }
                        match name {
                            Some(name) => items.push(Dependency { name, soft }),
                            None => ck.error(item.mark, "a dependency needs a \"name\""),
                        }
                    }
                    _ => ck.error(
                        item.mark,
                        format!(
                            "a dependency must be a job name or a mapping, found {}",
                            item.kind()
                        ),
                    ),
                }
            }
            job.dependencies = Some(ListAttr { items, override_ });
        }
        "provides" | "requires" | "tags" => {
            let override_ = ck.override_tag(v, key);
            let mut items = vec![];
            for item in ck.items(v) {
                match &item.value {
                    Value::Str(s) => items.push(s.clone()),
                    _ => ck.error(
                        item.mark,
                        format!(
                            "\"{key}\" must be a string or a list of strings, found {}",
                            item.kind()
                        ),
                    ),
                }
            }
            let attr = Some(ListAttr { items, override_ });
            match key {
                "provides" => job.provides = attr,
                "requires" => job.requires = attr,
                _ => job.tags = attr,
            }
        }
        "files" | "irrelevant-files" => {
            let override_ = ck.override_tag(v, key);
            let items = matchers(ck, v, key);
            let attr = Some(ListAttr { items, override_ });
            if key == "files" {
                job.files = attr;
            } else {
                job.irrelevant_files = attr;
            }
        }
        "branches" => {
            ck.no_tag(v, key);
            job.branches = Some(matchers(ck, v, key));
        }
        "semaphore" | "semaphores" => {
            ck.no_tag(v, key);
            let mut out = job.semaphores.take().unwrap_or_default();
            for item in ck.items(v) {
                match &item.value {
                    Value::Str(s) => out.push(s.clone()),
                    Value::Map(_) => {
                        out.extend(ck.field_string(
                            item,
                            "a semaphore",
                            &["name", "resources-first"],
                            "name",
                            "semaphore name",
                        ));
                    }
                    _ => ck.error(
                        item.mark,
                        format!("\"{key}\" must name semaphores, found {}", item.kind()),
                    ),
                }
            }
            job.semaphores = Some(out);
        }
        "roles" => {
            ck.no_tag(v, key);
            let mut out = vec![];
            for item in ck.items(v) {
                if ck
                    .fields(item, "a role", &["zuul", "galaxy", "name"])
                    .is_some()
                {
                    out.push(item.to_json());
                }
            }
            job.roles = Some(out);
        }
        "required-projects" => {
            let override_ = ck.override_tag(v, key);
            let mut items = vec![];
            for item in ck.items(v) {
                match &item.value {
                    Value::Str(_) => items.push(item.to_json()),
                    Value::Map(_) => {
                        let allowed = ["name", "override-branch", "override-checkout"];
                        if ck.fields(item, "a required project", &allowed).is_some() {
                            items.push(item.to_json());
                        }
                    }
                    _ => ck.error(
                        item.mark,
                        format!(
                            "a required project must be a name or a mapping, found {}",
                            item.kind()
                        ),
                    ),
                }
            }
            job.required_projects = Some(ListAttr { items, override_ });
        }
        "attribute-control" => {
            ck.no_tag(v, key);
            let allowed = [
                "requires",
                "provides",
                "tags",
                "files",
                "irrelevant-files",
                "required-projects",
                "vars",
                "extra-vars",
                "host-vars",
                "group-vars",
                "include-vars",
                "dependencies",
                "failure-output",
            ];
            if let Some(fields) = ck.fields(v, "attribute-control", &allowed) {
                for (attr, _, fv) in fields {
                    if let Some(inner) = ck.fields(fv, "attribute-control", &["final"]) {
                        for (_, _, b) in inner {
                            if ck.boolean(b, "final") == Some(true) {
                                job.final_attributes.push(attr.to_string());
                            }
                        }
                    }
                }
            }
        }
        _ => {
            // Accepted, kept, not acted on; tags like !override are allowed where Zuul
            // allows them (include-vars, failure-output), so they are not checked here.
            job.other.insert(key.to_string(), v.to_json());
        }
    }
}

/// `branches`, `files`, `irrelevant-files`: a pattern or a list of patterns, each a string
/// or Zuul's `{regex: PATTERN, negate: BOOL}` (`ZUUL_REGEX`, `zuul/configloader.py`).
pub(crate) fn matchers(ck: &mut Checker<'_>, v: &Node, key: &str) -> Vec<Matcher> {
    let mut out = vec![];
    for item in ck.items(v) {
        match &item.value {
            Value::Str(s) => {
                check_pattern(ck, item, key, s);
                out.push(Matcher::new(s.clone()));
            }
            Value::Map(_) => {
                let Some(fields) = ck.fields(item, "a regex matcher", &["regex", "negate"]) else {
                    continue;
                };
                let mut regex = None;
                let mut negate = false;
                for (k, _, fv) in fields {
                    if k == "regex" {
                        regex = ck.string(fv, "regex");
                    } else {
                        negate = ck.boolean(fv, "negate").unwrap_or(false);
                    }
                }
                match regex {
                    Some(r) => {
                        check_pattern(ck, item, key, &r);
                        out.push(Matcher { regex: r, negate });
                    }
                    None => ck.error(item.mark, format!("\"{key}\": a regex matcher needs \"regex\"")),
                }
            }
            _ => ck.error(
                item.mark,
                format!(
                    "\"{key}\" must be a string, a {{regex, negate}} mapping or a list of them, found {}",
                    item.kind()
                ),
            ),
        }
    }
    out
}

/// A `branches`/`files`/`irrelevant-files` pattern must compile as Zuul compiles it
/// (Python's `re` syntax, `job::matchers::compile`); otherwise an error at its line.
fn check_pattern(ck: &mut Checker<'_>, item: &Node, key: &str, pattern: &str) {
    if let Err(e) = crate::job::matchers::compile(pattern) {
        let e = e.lines().next().unwrap_or_default().to_string();
        ck.error(
            item.mark,
            format!("\"{key}\": invalid regular expression {pattern:?}: {e}"),
        );
    }
}

/// True for attributes a `final` job refuses from later variants and children.
pub fn is_execution_attribute(attr: &str) -> bool {
    EXECUTION_ATTRIBUTES.contains(&attr)
}
