//! Zuul configuration: files → stanzas (`JobDef`, `SecretDef`, `ProjectDef`, …).
//!
//! Owns: which files are read and in what order (ZUUL.md §1), the stanza types with the
//! position of every attribute, and the collection of *every* error of *every* file. Must
//! not: decrypt secrets (that happens at run time, see `job::secrets`), freeze jobs beyond
//! checking that they can be frozen, or read anything but the files it is pointed at.

mod check;
mod job;
mod job_content;
mod load;
mod project;
mod stanzas;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use job::{
    Dependency, EXECUTION_ATTRIBUTES, JobDef, ListAttr, PlaybookDef, SecretUse, Vars,
    is_execution_attribute,
};
pub use load::{ConfigRepo, LoadOptions, config_files, load};
pub use project::{PipelineJobs, ProjectDef, ProjectJob};
pub use stanzas::{NamedStanza, SecretDef, SecretValue};
pub(crate) use validate::sort_errors;

/// A position in a configuration file: `file:line:column`. `file` is the path as the user
/// thinks of it (relative to the project or library directory), so messages are stable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Serialize for Loc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Loc {
    /// `file:line`, for provenance listings.
    pub fn short(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Where a definition comes from: the shipped library, a tenant repository given with
/// `--config-repo` (its name is in [`Source::repo`]), or the project under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Library,
    Repo,
    Project,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Library => "the job library",
            Origin::Repo => "a tenant repository",
            Origin::Project => "the project",
        })
    }
}

/// One configuration file, already read: the pure entry point ([`Config::from_sources`]).
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path shown in messages (`zuul.d/jobs.yaml`, `jobs/container-images.yaml`).
    pub display: String,
    pub text: String,
    pub origin: Origin,
    /// Directory that playbook paths of this file are relative to.
    pub root: PathBuf,
    /// Canonical name of the tenant repository it belongs to (`Origin::Repo` only).
    pub repo: Option<String>,
}

/// Identity of the file a definition came from, shared by all its definitions.
#[derive(Debug, PartialEq, Eq)]
pub struct Source {
    pub file: Arc<str>,
    pub origin: Origin,
    pub root: PathBuf,
    /// Canonical name of the tenant repository (`Origin::Repo` only).
    pub repo: Option<Arc<str>>,
}

/// One configuration problem.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ConfigError {
    pub loc: Loc,
    /// The stanza it is in, e.g. `job "build"` or `project`.
    pub stanza: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.loc, self.stanza, self.message)
    }
}

/// Every error found while loading, in file order; what `config validate` prints.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} configuration error{}",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// The whole configuration: the library's and the project's stanzas.
#[derive(Debug, Default)]
pub struct Config {
    /// The project under test (its `project` stanzas may omit `name`).
    pub project_name: String,
    /// Files read, in order.
    pub files: Vec<Arc<Source>>,
    /// Job variants by name, in load order (the first one is the job's reference definition).
    pub jobs: HashMap<String, Vec<Arc<JobDef>>>,
    /// Job names in the order they were first defined.
    pub job_order: Vec<String>,
    pub secrets: HashMap<String, Arc<SecretDef>>,
    pub projects: Vec<ProjectDef>,
    pub templates: HashMap<String, ProjectDef>,
    pub nodesets: BTreeMap<String, NamedStanza>,
    pub semaphores: BTreeMap<String, NamedStanza>,
    pub pipelines: BTreeMap<String, NamedStanza>,
    pub queues: BTreeMap<String, NamedStanza>,
    /// Stanzas gantry accepts but does not act on (`pragma`, `image`, `label`, …).
    pub ignored: Vec<NamedStanza>,
    /// Problems that do not stop a run (references to other repositories, …).
    pub warnings: Vec<ConfigError>,
    /// References to jobs or templates this configuration does not define, accepted because
    /// of [`LoadOptions::allow_external`]; jobs depending on them cannot be frozen.
    pub external: Vec<String>,
    /// Secrets whose stanza had errors (uses of them are not reported again).
    pub unparsed_secrets: Vec<String>,
}

impl Config {
    /// Parse and check already-read files (library files first). Pure: no I/O.
    pub fn from_sources(
        files: Vec<SourceFile>,
        options: &LoadOptions,
    ) -> Result<Config, ConfigErrors> {
        load::from_sources(files, options)
    }

    /// The variants of a job, first definition first.
    pub fn job(&self, name: &str) -> Option<&[Arc<JobDef>]> {
        self.jobs.get(name).map(Vec::as_slice)
    }

    /// Names of every pipeline some project stanza or template uses, sorted.
    pub fn pipeline_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .projects
            .iter()
            .chain(self.templates.values())
            .flat_map(|p| p.pipelines.keys().cloned())
            .chain(self.pipelines.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The pipelines `project`'s own stanzas (and their templates) list jobs in, sorted.
    pub fn project_pipelines(&self, project: &str) -> Vec<String> {
        let mut names: Vec<String> = vec![];
        for p in self.project_stanzas(project) {
            let templates = p
                .templates
                .iter()
                .filter_map(|(t, _)| self.templates.get(t));
            for stanza in templates.chain(std::iter::once(p)) {
                names.extend(stanza.pipelines.keys().cloned());
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Project stanzas that apply to `project`: named so, or unnamed in the project's own
    /// files (an unnamed stanza in a tenant repository is about that repository).
    pub fn project_stanzas<'a>(
        &'a self,
        project: &str,
    ) -> impl Iterator<Item = &'a ProjectDef> + use<'a> {
        let project = project.to_string();
        self.projects.iter().filter(move |p| match &p.name {
            Some(n) => *n == project,
            None => project == self.project_name && self.origin_of(&p.loc.file) == Origin::Project,
        })
    }

    /// The origin of a file that was read (the project for an unknown one).
    pub fn origin_of(&self, file: &str) -> Origin {
        self.files
            .iter()
            .find(|s| &*s.file == file)
            .map(|s| s.origin)
            .unwrap_or(Origin::Project)
    }

    /// Names of every project with a stanza, ours first.
    pub fn project_names(&self) -> Vec<String> {
        let mut names = vec![];
        for p in &self.projects {
            let n = p.name.clone().unwrap_or_else(|| self.project_name.clone());
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    /// Directory playbook paths of `file` resolve against.
    pub fn root_of(&self, file: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|s| &*s.file == file)
            .map(|s| s.root.as_path())
    }
}
