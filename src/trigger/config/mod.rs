//! `gantry-serve.yaml`: registry endpoints and triggers, validated before anything serves.
//!
//! ```yaml
//! endpoints:
//!   - name: hub                    # referenced by triggers
//!     url: http://127.0.0.1:5000   # or host:port; plain http needs `insecure` off loopback
//!     credentials: user:pass       # optional; never handed to pipelines; or
//!     credentials_file: hub.creds  #   a file holding `user:pass` (relative to this file), or
//!     credentials_env: HUB_CREDS   #   an environment variable holding it
//!     ca: /etc/ssl/my-ca.pem       # optional
//!     insecure: false
//!     rate_limit: 5                # polls: at most 5 requests/s to this registry
//!     poll_interval: 300           # default interval (s) of this endpoint's poll triggers
//! triggers:
//!   - name: app
//!     source: dockerhub            # dockerhub | registry | gitlab | poll
//!     endpoint: hub                # where tags are resolved to digests (and polled)
//!     token_file: app.token        # webhook secret (?token=, X-Gitlab-Token, Bearer):
//!                                  # token, token_file or token_env; required for webhooks
//!     image: 'team/app'            # repository regex, whole name
//!     tags: {include: 'v[0-9.]+', match: full, exclude: ['sha256-*.sig']}
//!     project: ./project           # project directory, relative to this file
//!     pipeline: check
//!     change: null
//!     executor: auto               # auto | builtin | ansible (gantry run --executor)
//!     parameters: {env: dev}       # handed to the run as variables
//!     enabled: true
//!     debounce: 60                 # seconds: same (registry, repo, tag, digest) runs once
//!     poll: {interval: 60, order: semver, range: '>=1.0.0'}
//! web:                             # optional: the page, /api/* and build logs need
//!   htpasswd: users.htpasswd       # Basic credentials from this (bcrypt) file
//! ```
//!
//! Owns: reading and validating the file and the secrets it points to (token and
//! credentials files, environment variables, the htpasswd file), reporting every problem
//! as `file:line:column`; [`ServeConfig::check_projects`] loads each trigger's project.
//! Must not: start anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::TriggerError;
use super::filter::{Order, TagFilter};
use crate::client::{ClientOptions, Credentials};
use crate::text::yaml::{self, Node};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Dockerhub,
    Registry,
    Gitlab,
    Poll,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dockerhub => "dockerhub",
            Source::Registry => "registry",
            Source::Gitlab => "gitlab",
            Source::Poll => "poll",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    url: String,
    #[serde(default)]
    credentials: Option<String>,
    #[serde(default)]
    credentials_file: Option<PathBuf>,
    #[serde(default)]
    credentials_env: Option<String>,
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    rate_limit: Option<f64>,
    #[serde(default)]
    poll_interval: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTags {
    #[serde(default)]
    include: Option<String>,
    #[serde(default, rename = "match")]
    match_: Option<String>,
    #[serde(default)]
    exclude: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoll {
    #[serde(default)]
    interval: Option<f64>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    range: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    name: String,
    source: Source,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    tags: RawTags,
    project: PathBuf,
    pipeline: String,
    #[serde(default)]
    change: Option<String>,
    /// `auto` (default), `builtin` or `ansible`, as `gantry run --executor`.
    #[serde(default)]
    executor: crate::runner::ExecutorKind,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    debounce: Option<f64>,
    #[serde(default)]
    poll: Option<RawPoll>,
    /// Tenant repositories, `[NAME=]DIR` as `--config-repo` takes them (relative to
    /// the configuration file's directory).
    #[serde(default)]
    config_repos: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    htpasswd: PathBuf,
}

/// The page and API's protection (`web:`).
#[derive(Clone)]
pub struct Web {
    pub htpasswd_path: PathBuf,
    pub htpasswd: std::sync::Arc<crate::registry::auth::htpasswd::Htpasswd>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Web {{ htpasswd: {} }}", self.htpasswd_path.display())
    }
}

/// A secret written inline, in a file (relative to the config file) or in an environment
/// variable: at most one of the three. `Ok(None)`: none given.
fn secret(
    what: &str,
    inline: Option<&String>,
    file: Option<&PathBuf>,
    env: Option<&String>,
    base: &Path,
) -> Result<Option<String>, String> {
    match (inline, file, env) {
        (None, None, None) => Ok(None),
        (Some(v), None, None) => Ok(Some(v.clone())),
        (None, Some(f), None) => {
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{what}_file {}: {e}", path.display()))?;
            let v = text.trim_end_matches(['\n', '\r']).to_string();
            if v.is_empty() {
                return Err(format!("{what}_file {} is empty", path.display()));
            }
            Ok(Some(v))
        }
        (None, None, Some(name)) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(format!(
                "{what}_env: environment variable {name} is not set"
            )),
        },
        _ => Err(format!(
            "give one of `{what}`, `{what}_file` and `{what}_env`, not several"
        )),
    }
}

/// A registry as triggers reach it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    /// `host:port` as references name it.
    pub host: String,
    pub options: ClientOptions,
    /// Polls send at most this many requests per second to this registry.
    pub rate_limit: Option<f64>,
    /// Default poll interval of this endpoint's poll triggers, in seconds.
    pub poll_interval: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct PollSettings {
    pub interval: Duration,
    pub order: Order,
}

#[derive(Clone, Debug)]
pub struct Trigger {
    pub name: String,
    pub source: Source,
    pub endpoint: Option<Endpoint>,
    pub token: Option<String>,
    /// Whole-name repository regex (`None`: any).
    pub image: Option<regex::Regex>,
    /// The `image` as written (a poll's repository name).
    pub image_text: Option<String>,
    pub tags: TagFilter,
    pub project_dir: PathBuf,
    /// Tenant repositories loaded before the project (`config_repos:`).
    pub config_repos: Vec<crate::job::ConfigRepo>,
    pub pipeline: String,
    pub change: Option<String>,
    pub executor: crate::runner::ExecutorKind,
    pub parameters: serde_json::Map<String, Value>,
    pub enabled: bool,
    pub debounce: Duration,
    pub poll: Option<PollSettings>,
    /// Where the trigger is defined (`file:line:column`), for later errors.
    pub at: String,
    /// The jobs its pipeline runs (known after [`ServeConfig::check_projects`]).
    pub jobs: Vec<String>,
}

impl Trigger {
    /// The registry this trigger's images live in.
    pub fn registry(&self) -> String {
        match (&self.endpoint, self.source) {
            (Some(e), _) => e.host.clone(),
            (None, _) => crate::oci::DOCKER_HUB.to_string(),
        }
    }

    /// Does the repository name pass the image regex?
    pub fn image_matches(&self, repository: &str) -> bool {
        self.image.as_ref().is_none_or(|r| r.is_match(repository))
    }
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub path: PathBuf,
    pub endpoints: Vec<Endpoint>,
    pub triggers: BTreeMap<String, Trigger>,
    /// Runs at once per `gantry serve` process (top-level `max_concurrent_runs`; default:
    /// the number of CPUs). More wait in a FIFO queue.
    pub max_concurrent_runs: Option<usize>,
    /// `web:`: Basic credentials for the page and the API.
    pub web: Option<Web>,
}

/// The default debounce: Docker Hub sends one hook per pushed platform within seconds.
const DEFAULT_DEBOUNCE_SECS: f64 = 60.0;
/// The default poll interval (Docker Hub's anonymous rate limit is 100 pulls / 6 h; a HEAD
/// is not counted, but tags/list is).
const DEFAULT_POLL_SECS: f64 = 300.0;

impl ServeConfig {
    pub fn load(path: &Path) -> Result<ServeConfig, TriggerError> {
        let text = std::fs::read_to_string(path).map_err(|e| TriggerError::Io {
            context: format!("reading {}", path.display()),
            source: e,
        })?;
        Self::parse(path, &text)
    }

    /// Every problem in the file, each `file:line:column: message`.
    pub fn parse(path: &Path, text: &str) -> Result<ServeConfig, TriggerError> {
        let file = path.display().to_string();
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut errors: Vec<String> = Vec::new();
        let root = match yaml::parse(text) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(TriggerError::Config(vec![format!(
                    "{file}:1:1: empty configuration"
                )]));
            }
            Err(e) => {
                return Err(TriggerError::Config(vec![format!(
                    "{file}:{}: {}",
                    e.mark, e.message
                )]));
            }
        };
        let yaml::Value::Map(entries) = &root.value else {
            return Err(TriggerError::Config(vec![format!(
                "{file}:{}: expected a mapping with `endpoints` and `triggers`",
                root.mark
            )]));
        };
        let mut raw_endpoints: Vec<(Node, RawEndpoint)> = Vec::new();
        let mut raw_triggers: Vec<(Node, RawTrigger)> = Vec::new();
        let mut max_concurrent_runs = None;
        let mut web = None;
        for (k, v) in entries {
            let key = k.key_text();
            if key == "max_concurrent_runs" {
                match v.to_json().as_u64() {
                    Some(n) if n > 0 => max_concurrent_runs = Some(n as usize),
                    _ => errors.push(format!(
                        "{file}:{}: `max_concurrent_runs` must be a number above 0",
                        v.mark
                    )),
                }
                continue;
            }
            if key == "web" {
                match serde_json::from_value::<RawWeb>(v.to_json()) {
                    Ok(w) => {
                        let path = base.join(&w.htpasswd);
                        match crate::registry::auth::htpasswd::Htpasswd::load(&path) {
                            Ok(h) => {
                                web = Some(Web {
                                    htpasswd_path: path,
                                    htpasswd: std::sync::Arc::new(h),
                                })
                            }
                            Err(e) => errors.push(format!("{file}:{}: web: {e}", v.mark)),
                        }
                    }
                    Err(e) => errors.push(format!("{file}:{}: web: {e}", v.mark)),
                }
                continue;
            }
            let items: Vec<Node> = match &v.value {
                yaml::Value::Seq(items) => items.clone(),
                yaml::Value::Null => vec![],
                _ => {
                    errors.push(format!(
                        "{file}:{}: `{key}` must be a list, not {}",
                        v.mark,
                        v.kind()
                    ));
                    continue;
                }
            };
            for item in items {
                let json = item.to_json();
                match key.as_str() {
                    "endpoints" => match serde_json::from_value::<RawEndpoint>(json) {
                        Ok(e) => raw_endpoints.push((item, e)),
                        Err(e) => errors.push(format!("{file}:{}: endpoint: {e}", item.mark)),
                    },
                    "triggers" => match serde_json::from_value::<RawTrigger>(json) {
                        Ok(t) => raw_triggers.push((item, t)),
                        Err(e) => errors.push(format!("{file}:{}: trigger: {e}", item.mark)),
                    },
                    _ => {}
                }
            }
            if key != "endpoints" && key != "triggers" {
                errors.push(format!(
                    "{file}:{}: unknown key `{key}` (expected endpoints, triggers, web, max_concurrent_runs)",
                    k.mark
                ));
            }
        }

        let mut endpoints = Vec::new();
        for (node, e) in raw_endpoints {
            let at = format!("{file}:{}", node.mark);
            let host = e
                .url
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .trim_end_matches("/v2")
                .to_string();
            let mut options = ClientOptions {
                insecure: e.insecure || e.url.starts_with("http://"),
                // an endpoint written https:// is never downgraded to plain HTTP
                https_only: e.url.starts_with("https://"),
                ..ClientOptions::default()
            };
            match secret(
                "credentials",
                e.credentials.as_ref(),
                e.credentials_file.as_ref(),
                e.credentials_env.as_ref(),
                &base,
            ) {
                Ok(Some(c)) => match Credentials::parse(&c) {
                    Ok(c) => options.credentials = Some(c),
                    // Never the value: it is a secret.
                    Err(_) => errors.push(format!(
                        "{at}: endpoint {}: credentials must be `user:password`",
                        e.name
                    )),
                },
                Ok(None) => {}
                Err(err) => errors.push(format!("{at}: endpoint {}: {err}", e.name)),
            }
            if let Some(ca) = &e.ca {
                options.ca_certs.push(base.join(ca));
            }
            if endpoints.iter().any(|x: &Endpoint| x.name == e.name) {
                errors.push(format!("{at}: endpoint {} is defined twice", e.name));
            }
            if e.rate_limit.is_some_and(|r| r <= 0.0) {
                errors.push(format!("{at}: endpoint {}: rate_limit must be > 0", e.name));
            }
            if e.poll_interval.is_some_and(|r| r <= 0.0) {
                errors.push(format!(
                    "{at}: endpoint {}: poll_interval must be > 0",
                    e.name
                ));
            }
            endpoints.push(Endpoint {
                name: e.name,
                host,
                options,
                rate_limit: e.rate_limit,
                poll_interval: e.poll_interval,
            });
        }

        let mut triggers = BTreeMap::new();
        for (node, t) in raw_triggers {
            let at = format!("{file}:{}", node.mark);
            let endpoint = match &t.endpoint {
                Some(name) => match endpoints.iter().find(|e| &e.name == name) {
                    Some(e) => Some(e.clone()),
                    None => {
                        errors.push(format!(
                            "{at}: trigger {}: unknown endpoint {name:?}",
                            t.name
                        ));
                        None
                    }
                },
                None => None,
            };
            let image = match &t.image {
                Some(re) => match regex::Regex::new(&format!("^(?:{re})$")) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        errors.push(format!("{at}: trigger {}: image regex: {e}", t.name));
                        None
                    }
                },
                None => None,
            };
            let tags = match TagFilter::new(
                t.tags.include.as_deref(),
                t.tags.match_.as_deref(),
                t.tags.exclude.clone(),
            ) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(format!("{at}: trigger {}: tags: {e}", t.name));
                    TagFilter::default()
                }
            };
            let poll = match (&t.poll, t.source) {
                (p, Source::Poll) => {
                    let order = match p
                        .as_ref()
                        .map(|p| Order::parse(p.order.as_deref(), p.range.as_deref()))
                    {
                        Some(Ok(o)) => o,
                        Some(Err(e)) => {
                            errors.push(format!("{at}: trigger {}: poll: {e}", t.name));
                            Order::default()
                        }
                        None => Order::default(),
                    };
                    // The trigger's interval, else its endpoint's, else the default.
                    let secs = p
                        .as_ref()
                        .and_then(|p| p.interval)
                        .or_else(|| endpoint.as_ref().and_then(|e| e.poll_interval))
                        .unwrap_or(DEFAULT_POLL_SECS);
                    if endpoint.is_none() {
                        errors.push(format!(
                            "{at}: trigger {}: a poll trigger needs an endpoint",
                            t.name
                        ));
                    }
                    Some(PollSettings {
                        interval: Duration::from_secs_f64(secs.max(0.05)),
                        order,
                    })
                }
                (Some(_), s) => {
                    errors.push(format!(
                        "{at}: trigger {}: `poll` is only for source poll, not {}",
                        t.name,
                        s.as_str()
                    ));
                    None
                }
                (None, _) => None,
            };
            let token = match secret(
                "token",
                t.token.as_ref(),
                t.token_file.as_ref(),
                t.token_env.as_ref(),
                &base,
            ) {
                Ok(tok) => tok,
                Err(err) => {
                    errors.push(format!("{at}: trigger {}: {err}", t.name));
                    None
                }
            };
            let no_secret_given =
                t.token.is_none() && t.token_file.is_none() && t.token_env.is_none();
            if t.source != Source::Poll && no_secret_given {
                errors.push(format!(
                    "{at}: trigger {}: a {} trigger needs a `token`, `token_file` or `token_env` \
                     (anyone who reaches the port could start runs)",
                    t.name,
                    t.source.as_str()
                ));
            }
            let project_dir = base.join(&t.project);
            if !project_dir.is_dir() {
                errors.push(format!(
                    "{at}: trigger {}: project directory {} does not exist",
                    t.name,
                    project_dir.display()
                ));
            }
            if t.name.is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                errors.push(format!(
                    "{at}: trigger name {:?}: use letters, digits, - _ .",
                    t.name
                ));
            }
            if triggers.contains_key(&t.name) {
                errors.push(format!("{at}: trigger {} is defined twice", t.name));
            }
            let trigger = Trigger {
                name: t.name.clone(),
                source: t.source,
                endpoint,
                token,
                image,
                image_text: t.image.clone(),
                tags,
                project_dir,
                config_repos: t
                    .config_repos
                    .iter()
                    .map(|spec| {
                        let mut r = crate::job::ConfigRepo::parse(spec);
                        r.dir = base.join(&r.dir);
                        r
                    })
                    .collect(),
                pipeline: t.pipeline,
                change: t.change,
                executor: t.executor,
                parameters: t.parameters,
                enabled: t.enabled,
                debounce: Duration::from_secs_f64(
                    t.debounce.unwrap_or(DEFAULT_DEBOUNCE_SECS).max(0.0),
                ),
                poll,
                at: at.clone(),
                jobs: vec![],
            };
            triggers.insert(t.name, trigger);
        }
        if errors.is_empty() {
            Ok(ServeConfig {
                path: path.to_path_buf(),
                endpoints,
                triggers,
                max_concurrent_runs,
                web,
            })
        } else {
            Err(TriggerError::Config(errors))
        }
    }
}

mod projects;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_and_line() {
        let text = "endpoints:\n  - name: a\n    url: http://127.0.0.1:1\ntriggers:\n  - name: t\n    source: dockerhub\n    project: .\n    pipeline: check\n  - name: u\n    source: ftp\n    project: .\n    pipeline: check\n";
        let Err(TriggerError::Config(errs)) = ServeConfig::parse(Path::new("s.yaml"), text) else {
            panic!("expected errors")
        };
        assert!(
            errs.iter()
                .any(|e| e.starts_with("s.yaml:5:") && e.contains("token")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("s.yaml:9:") && e.contains("ftp")),
            "{errs:?}"
        );
    }

    #[test]
    fn poll_interval_from_the_trigger_else_the_endpoint() {
        let text = "endpoints:\n  - name: a\n    url: http://127.0.0.1:1\n    poll_interval: 300\ntriggers:\n  - name: t\n    source: poll\n    endpoint: a\n    image: x\n    project: .\n    pipeline: check\n  - name: u\n    source: poll\n    endpoint: a\n    image: y\n    project: .\n    pipeline: check\n    poll: {interval: 5}\n";
        let cfg = ServeConfig::parse(Path::new("s.yaml"), text).unwrap();
        let interval = |n: &str| cfg.triggers[n].poll.as_ref().unwrap().interval;
        assert_eq!(interval("t"), std::time::Duration::from_secs(300));
        assert_eq!(interval("u"), std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_trigger_chooses_its_executor() {
        let text = "endpoints:\n  - name: a\n    url: http://127.0.0.1:1\ntriggers:\n  - name: t\n    source: poll\n    endpoint: a\n    image: x\n    project: .\n    pipeline: check\n    executor: ansible\n  - name: u\n    source: poll\n    endpoint: a\n    image: y\n    project: .\n    pipeline: check\n";
        let cfg = ServeConfig::parse(Path::new("s.yaml"), text).unwrap();
        assert_eq!(
            cfg.triggers["t"].executor,
            crate::runner::ExecutorKind::Ansible
        );
        assert_eq!(
            cfg.triggers["u"].executor,
            crate::runner::ExecutorKind::Auto
        );
    }
}
