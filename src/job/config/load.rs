//! Reading a project directory (and the shipped library) into a [`Config`].
//!
//! Owns: the file order of ZUUL.md §1 and the top-level shape of each file (a list of
//! one-key mappings). Must not: stop at the first bad file or stanza.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::check::Checker;
use super::job::parse_job;
use super::project::parse_project;
use super::stanzas::{
    NODESET_KEYS, PRAGMA_KEYS, QUEUE_KEYS, SEMAPHORE_KEYS, parse_named, parse_secret,
};
use super::{Config, ConfigError, ConfigErrors, Loc, Origin, Source, SourceFile, validate};
use crate::text::suggest;
use crate::text::yaml::{self, Value};

/// How to load a configuration.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The shipped job library (`jobs/`); absent or empty is fine.
    pub library_dir: Option<PathBuf>,
    /// Name of the project under test; defaults to the project directory's name.
    pub project_name: Option<String>,
    /// Accept references to jobs and project-templates defined in other repositories
    /// (`base`, `tox`, `openstack-python3-jobs`, …) with a warning instead of an error.
    pub allow_external: bool,
    /// The tenant's other repositories, read in this order after the library and before the
    /// project (Zuul: config-projects, then untrusted-projects).
    pub config_repos: Vec<ConfigRepo>,
}

/// One tenant repository (`--config-repo [NAME=]DIR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRepo {
    /// Canonical name (`opendev/base-jobs`): what `roles: [{zuul: NAME}]` and
    /// `zuul.projects` use.
    pub name: String,
    pub dir: PathBuf,
}

impl ConfigRepo {
    /// `NAME=DIR` or `DIR` (the name is then the directory's name).
    pub fn parse(spec: &str) -> ConfigRepo {
        match spec.split_once('=') {
            Some((name, dir)) if !name.is_empty() && !dir.is_empty() => ConfigRepo {
                name: name.to_string(),
                dir: PathBuf::from(dir),
            },
            _ => {
                let dir = PathBuf::from(spec);
                let abs = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                let name = abs
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| spec.to_string());
                ConfigRepo { name, dir }
            }
        }
    }
}

const STANZAS: &[&str] = &[
    "job",
    "secret",
    "project",
    "project-template",
    "nodeset",
    "semaphore",
    "pipeline",
    "queue",
    "pragma",
    "image",
    "flavor",
    "label",
    "section",
    "provider",
];

/// The configuration files of a project directory in Zuul's order: `zuul.yaml`,
/// `zuul.d/**/*.yaml`, `.zuul.yaml`, `.zuul.d/**/*.yaml` (each directory sorted by path).
/// As Zuul's merger (`zuul/merger/merger.py`, `getFiles`): only names ending in `.yaml`
/// (projects keep Ansible playbooks as `*.yml` there), and a directory holding a
/// `.zuul.ignore` file is skipped with everything under it.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![];
    for root in ["zuul.yaml", "zuul.d", ".zuul.yaml", ".zuul.d"] {
        let path = dir.join(root);
        if path.is_file() {
            out.push(path);
        } else if path.is_dir() {
            let mut found = vec![];
            walk_yaml(&path, &mut found)?;
            found.sort();
            out.extend(found);
        }
    }
    Ok(out)
}

fn walk_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if dir.join(".zuul.ignore").exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Load the library (if any) and the project directory. Every problem of every file is in
/// the error; unreadable files are reported like any other problem.
pub fn load(project_dir: &Path, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    let mut sources = vec![];
    let mut errors = vec![];
    let mut read = |path: &Path, base: &Path, origin: Origin, root: &Path, repo: Option<&str>| {
        let rel = path.strip_prefix(base).unwrap_or(path);
        let display = match repo {
            Some(name) => format!("{name}:{}", rel.display()),
            None => rel.display().to_string(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push(SourceFile {
                display,
                text,
                origin,
                root: root.to_path_buf(),
                repo: repo.map(str::to_string),
            }),
            Err(e) => errors.push(ConfigError {
                loc: Loc {
                    file: display.into(),
                    line: 0,
                    column: 0,
                },
                stanza: "file".into(),
                message: format!("reading the file: {e}"),
            }),
        }
    };
    if let Some(lib) = &options.library_dir
        && lib.is_dir()
    {
        // Library playbooks are relative to the directory holding `jobs/`.
        let root = lib.parent().unwrap_or(lib).to_path_buf();
        let mut files = vec![];
        if let Err(e) = walk_yaml(lib, &mut files) {
            return Err(io_error(lib, e));
        }
        files.sort();
        for f in files {
            read(&f, &root, Origin::Library, &root, None);
        }
    }
    for repo in &options.config_repos {
        if !repo.dir.is_dir() {
            return Err(io_error(
                &repo.dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("--config-repo {}: not a directory", repo.name),
                ),
            ));
        }
        let files = config_files(&repo.dir).map_err(|e| io_error(&repo.dir, e))?;
        for f in &files {
            read(f, &repo.dir, Origin::Repo, &repo.dir, Some(&repo.name));
        }
    }
    let files = config_files(project_dir).map_err(|e| io_error(project_dir, e))?;
    for f in &files {
        read(f, project_dir, Origin::Project, project_dir, None);
    }
    let mut options = options.clone();
    let explicit_name = options.project_name.is_some();
    if options.project_name.is_none() {
        let abs = project_dir
            .canonicalize()
            .unwrap_or_else(|_| project_dir.to_path_buf());
        options.project_name = abs.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    match from_sources(sources, &options) {
        Ok(mut config) if errors.is_empty() => {
            if !explicit_name {
                adopt_own_stanza_name(&mut config);
            }
            Ok(config)
        }
        Ok(config) => Err(ConfigErrors {
            errors,
            warnings: config.warnings,
        }),
        Err(mut e) => {
            errors.append(&mut e.errors);
            e.errors = errors;
            Err(e)
        }
    }
}

/// Zuul reads an untrusted project's own `project` stanzas as being about that project,
/// whatever its checkout directory is called: when the project's files name exactly one
/// project (`openstack/loci` in a checkout called `loci`), that is the project under test
/// (an untrusted project may only configure itself).
fn adopt_own_stanza_name(config: &mut Config) {
    let own = |file: &str| {
        config
            .files
            .iter()
            .any(|f| &*f.file == file && f.origin == Origin::Project)
    };
    let mut names: Vec<&str> = config
        .projects
        .iter()
        .filter(|p| own(&p.loc.file))
        .filter_map(|p| p.name.as_deref())
        .collect();
    names.sort();
    names.dedup();
    if let [name] = names.as_slice()
        && *name != config.project_name
    {
        config.project_name = name.to_string();
    }
}

fn io_error(path: &Path, e: std::io::Error) -> ConfigErrors {
    ConfigErrors {
        errors: vec![ConfigError {
            loc: Loc {
                file: path.display().to_string().into(),
                line: 0,
                column: 0,
            },
            stanza: "directory".into(),
            message: format!("reading the directory: {e}"),
        }],
        warnings: vec![],
    }
}

pub(crate) fn from_sources(
    files: Vec<SourceFile>,
    options: &LoadOptions,
) -> Result<Config, ConfigErrors> {
    let mut config = Config {
        project_name: options
            .project_name
            .clone()
            .unwrap_or_else(|| "project".into()),
        ..Config::default()
    };
    let mut errors: Vec<ConfigError> = vec![];
    let roots: Vec<&str> = files
        .iter()
        .filter(|f| f.origin == Origin::Project)
        .filter_map(|f| f.display.split('/').next())
        .collect();
    let mut distinct: Vec<&str> = roots.clone();
    distinct.dedup();
    if distinct.len() > 1 {
        config.warnings.push(ConfigError {
            loc: Loc {
                file: distinct[1].into(),
                line: 0,
                column: 0,
            },
            stanza: "project".into(),
            message: format!(
                "configuration found in more than one of {}; Zuul reports this as an error, gantry reads them all in order",
                distinct.join(", ")
            ),
        });
    }
    for file in files {
        let source = Arc::new(Source {
            file: file.display.clone().into(),
            origin: file.origin,
            root: file.root.clone(),
            repo: file.repo.as_deref().map(Arc::from),
        });
        config.files.push(source.clone());
        parse_file(&mut config, &mut errors, &source, &file.text);
    }
    validate::validate(&mut config, &mut errors, options);
    // Report in file order, then by position.
    validate::sort_errors(&config, &mut errors);
    let mut warnings = std::mem::take(&mut config.warnings);
    warnings.sort_by_key(|w| (validate::file_order(&config, &w.loc.file), w.loc.line));
    config.warnings = warnings;
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors {
            errors,
            warnings: std::mem::take(&mut config.warnings),
        })
    }
}

/// True when a second definition of a name comes from another tenant repository (or the
/// library) than the first: Zuul's `shadow` — a warning, and the first definition wins.
fn shadowed(config: &Config, first: &Loc, source: &Source) -> bool {
    let Some(first) = config.files.iter().find(|f| f.file == first.file) else {
        return false;
    };
    let differs = first.origin != source.origin || first.repo != source.repo;
    differs && !(first.origin == Origin::Project && source.origin == Origin::Project)
}

/// The `name` of a stanza body, when it is a plain string.
fn named(body: &yaml::Node) -> Option<String> {
    let Value::Map(entries) = &body.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("name"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

fn parse_file(
    config: &mut Config,
    errors: &mut Vec<ConfigError>,
    source: &Arc<Source>,
    text: &str,
) {
    let mut ck = Checker {
        file: source.file.clone(),
        stanza: "file".into(),
        errors,
        warnings: vec![],
    };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return,
        Err(e) => {
            ck.error(e.mark, format!("invalid yaml: {}", e.message));
            return;
        }
    };
    let Value::Seq(items) = &root.value else {
        ck.error(
            root.mark,
            format!(
                "the configuration must be a list of stanzas, found {}",
                root.kind()
            ),
        );
        return;
    };
    for item in items {
        ck.stanza = "file".into();
        let Value::Map(entries) = &item.value else {
            ck.error(
                item.mark,
                format!(
                    "each stanza must be a mapping with one key (like \"job\"), found {}",
                    item.kind()
                ),
            );
            continue;
        };
        if entries.len() != 1 {
            let keys: Vec<String> = entries.iter().map(|(k, _)| k.key_text()).collect();
            ck.error(
                item.mark,
                format!(
                    "each stanza must have exactly one key, found {}: {}",
                    keys.len(),
                    keys.join(", ")
                ),
            );
            continue;
        }
        let (k, body) = &entries[0];
        let kind = k.key_text();
        // Name the stanza from the start, so errors before its `name` line say which one.
        ck.stanza = match named(body) {
            Some(name) => format!("{kind} \"{name}\""),
            None => kind.clone(),
        };
        match kind.as_str() {
            "job" => {
                if let Some(job) = parse_job(&mut ck, body, source, None) {
                    let job = Arc::new(job);
                    let name = job.name.clone();
                    match config.jobs.get_mut(&name) {
                        Some(variants) => variants.push(job),
                        None => {
                            config.job_order.push(name.clone());
                            config.jobs.insert(name, vec![job]);
                        }
                    }
                }
            }
            "secret" => {
                let parsed = parse_secret(&mut ck, body, source);
                if parsed.is_none()
                    && let Some(name) = named(body)
                {
                    // Reported already; do not also report every use as "not found".
                    config.unparsed_secrets.push(name);
                }
                if let Some(secret) = parsed {
                    if let Some(first) = config.secrets.get(&secret.name) {
                        if shadowed(config, &first.loc, source) {
                            // A job uses its own project's secret: the project's wins.
                            let msg = format!(
                                "secret \"{}\" is also defined at {}; {} used",
                                secret.name,
                                first.loc,
                                if source.origin == Origin::Project {
                                    "this one is"
                                } else {
                                    "the first is"
                                }
                            );
                            ck.warn(body.mark, msg);
                            if source.origin == Origin::Project {
                                config.secrets.insert(secret.name.clone(), Arc::new(secret));
                            }
                        } else {
                            let msg = format!(
                                "secret \"{}\" is already defined at {}",
                                secret.name, first.loc
                            );
                            ck.error(body.mark, msg);
                        }
                    } else {
                        config.secrets.insert(secret.name.clone(), Arc::new(secret));
                    }
                }
            }
            "project" => {
                if let Some(p) = parse_project(&mut ck, body, source, false) {
                    config.projects.push(p);
                }
            }
            "project-template" => {
                if let Some(t) = parse_project(&mut ck, body, source, true)
                    && let Some(name) = t.name.clone()
                {
                    if let Some(first) = config.templates.get(&name) {
                        let msg = format!(
                            "project-template \"{name}\" is already defined at {}",
                            first.loc
                        );
                        if shadowed(config, &first.loc, source) {
                            ck.warn(body.mark, format!("{msg}; the first definition wins"));
                        } else {
                            ck.error(body.mark, msg);
                        }
                    } else {
                        config.templates.insert(name, t);
                    }
                }
            }
            "nodeset" | "semaphore" | "pipeline" | "queue" => {
                let allowed = match kind.as_str() {
                    "nodeset" => Some(NODESET_KEYS),
                    "semaphore" => Some(SEMAPHORE_KEYS),
                    "queue" => Some(QUEUE_KEYS),
                    _ => None,
                };
                if let Some(s) = parse_named(&mut ck, &kind, body, allowed, true) {
                    let map = match kind.as_str() {
                        "nodeset" => &mut config.nodesets,
                        "semaphore" => &mut config.semaphores,
                        "queue" => &mut config.queues,
                        _ => &mut config.pipelines,
                    };
                    if let Some(first) = map.get(&s.name) {
                        let msg =
                            format!("{kind} \"{}\" is already defined at {}", s.name, first.loc);
                        let first_loc = first.loc.clone();
                        if shadowed(config, &first_loc, source) {
                            ck.warn(body.mark, format!("{msg}; the first definition wins"));
                        } else {
                            ck.error(body.mark, msg);
                        }
                    } else {
                        map.insert(s.name.clone(), s);
                    }
                }
            }
            "pragma" => {
                if let Some(s) = parse_named(&mut ck, "pragma", body, Some(PRAGMA_KEYS), false) {
                    config.ignored.push(s);
                }
            }
            "image" | "flavor" | "label" | "section" | "provider" => {
                if let Some(s) = parse_named(&mut ck, &kind, body, None, true) {
                    config.ignored.push(s);
                }
            }
            other => {
                let hint = suggest::hint(other, STANZAS.iter().copied());
                ck.error(k.mark, format!("unknown stanza \"{other}\"{hint}"));
            }
        }
    }
    config.warnings.append(&mut ck.warnings);
}
