//! Native roles with zuul-jobs names and variable contracts (ZUUL.md §9).
//!
//! A playbook that says `roles: [run-buildset-registry]` gets these Rust implementations
//! instead of Ansible roles: registry work happens in-process through `client` and
//! `registry` (no skopeo, socat or registry container), builds through `build`. Roles
//! never shell out to skopeo or the docker CLI, and never print: they log to the build's
//! log sink.
//!
//! State that outlives one role call (buildset registries started by a build, the
//! intermediate registry the runner provides) lives in [`RoleEnv`], owned by the runner.

mod buildset;
mod ensure_docker;
mod images;
mod intermediate;
mod publish;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::client::ClientOptions;
use crate::playbook::{NativeRoleError, NativeRoles, RoleCall, RoleFuture, RoleOutcome};

pub use images::ImageSpec;

/// A registry the runner provides: gantry's embedded intermediate registry (used when the
/// configuration names none) or `--intermediate-registry` (an explicit override).
/// Configuration wins otherwise: the `intermediate_registry` secret or variable is the
/// registry the roles use, so other CI machines find the images there (ZUUL.md §9).
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `host:port`
    pub host: String,
    pub options: ClientOptions,
}

/// A buildset registry started by `run-buildset-registry`; stopped when its build ends.
struct RunningRegistry {
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// What the roles share for one `gantry run`.
pub struct RoleEnv {
    pub intermediate: Option<Endpoint>,
    /// True when `intermediate` was given explicitly (`--intermediate-registry`): it then
    /// overrides the configuration's `intermediate_registry`.
    pub intermediate_override: bool,
    /// Root under which `use-buildset-registry` writes host configuration (docker certs.d,
    /// config.json, registries.conf, containerd and BuildKit files). `/` on a CI node;
    /// a directory under the state dir by default so a laptop's /etc is untouched.
    pub host_root: PathBuf,
    /// Options for publication registries (CA certificates, --insecure).
    pub publication: ClientOptions,
    /// Stand-ins for publication registries (`docker.io` → a local registry), so the whole
    /// gate and promote flow runs without Docker Hub.
    pub publish_to: HashMap<String, Endpoint>,
    /// The image builder of the build roles when a job's `gantry_builder` variable does
    /// not say (`gantry run --builder`, `GANTRY_BUILDER`); `None`: docker when an engine
    /// answers, else native.
    pub builder: Option<crate::build::BuilderKind>,
    registries: Mutex<HashMap<String, Vec<RunningRegistry>>>,
}

impl RoleEnv {
    pub fn new(
        intermediate: Option<Endpoint>,
        host_root: PathBuf,
        publication: ClientOptions,
    ) -> RoleEnv {
        RoleEnv {
            intermediate,
            intermediate_override: false,
            host_root,
            publication,
            publish_to: HashMap::new(),
            builder: None,
            registries: Mutex::new(HashMap::new()),
        }
    }

    /// Stops the buildset registries a build started (when the build ends).
    pub fn stop_registries(&self, build: &str) {
        let stopped = self
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(build);
        for r in stopped.into_iter().flatten() {
            r.task.abort();
        }
    }

    fn keep_registry(&self, build: &str, r: RunningRegistry) {
        self.registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(build.to_string())
            .or_default()
            .push(r);
    }
}

impl Drop for RoleEnv {
    fn drop(&mut self) {
        for (_, rs) in self
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            for r in rs {
                r.task.abort();
            }
        }
    }
}

/// The native role set, as the playbook interpreter sees it.
#[derive(Clone)]
pub struct NativeRoleSet {
    pub env: Arc<RoleEnv>,
}

/// Every role name served natively.
pub const ROLES: &[&str] = &[
    "ensure-docker",
    "ensure-podman",
    "run-buildset-registry",
    "use-buildset-registry",
    "pull-from-intermediate-registry",
    "push-to-intermediate-registry",
    "build-docker-image",
    "build-container-image",
    "upload-docker-image",
    "upload-container-image",
    "promote-docker-image",
    "promote-container-image",
    "remove-registry-tag",
];

impl NativeRoles for NativeRoleSet {
    fn has(&self, name: &str) -> bool {
        ROLES.contains(&name)
    }

    fn names(&self) -> Vec<String> {
        ROLES.iter().map(|r| r.to_string()).collect()
    }

    fn run<'a>(&'a self, name: &'a str, call: RoleCall<'a>) -> RoleFuture<'a> {
        Box::pin(async move {
            let env = &self.env;
            let started = std::time::Instant::now();
            let result = match name {
                "ensure-docker" | "ensure-podman" => ensure_docker::run(env, &call).await,
                "run-buildset-registry" => buildset::run_registry(env, &call).await,
                "use-buildset-registry" => buildset::use_registry(env, &call).await,
                "pull-from-intermediate-registry" => intermediate::pull(env, &call).await,
                "push-to-intermediate-registry" => intermediate::push(env, &call).await,
                "build-docker-image" | "build-container-image" => {
                    publish::build(env, &call, name).await
                }
                "upload-docker-image" | "upload-container-image" => {
                    publish::upload(env, &call, name).await
                }
                "promote-docker-image" | "promote-container-image" => {
                    publish::promote(env, &call, name).await
                }
                "remove-registry-tag" => publish::remove_tag(env, &call).await,
                other => return Err(NativeRoleError::Unknown(other.to_string())),
            };
            // Where a build's wall time goes (`-v`): one line per native role.
            tracing::debug!("native role {name}: {:.1} ms", ms(started));
            result.map_err(|e| NativeRoleError::Role(Box::new(e)))
        })
    }
}

/// Milliseconds since `t`, for the `-v` timing lines.
pub(crate) fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Why a native role failed. The messages are the ones users see in the build log.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// A role variable is missing, or its value is not what the role needs.
    #[error("{0}")]
    Var(String),
    /// Writing or reading a local file (certificates, the registry's directory).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An image reference, a store, a copy or a registry call.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// A repository name that is not a valid reference.
    #[error(transparent)]
    Reference(#[from] crate::oci::ReferenceError),
    /// A build's settings (`SOURCE_DATE_EPOCH`).
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    /// Setting up the buildset registry: its certificate, password or configuration.
    #[error(transparent)]
    Tls(#[from] crate::registry::tls::TlsError),
    #[error(transparent)]
    Htpasswd(#[from] crate::registry::auth::htpasswd::HtpasswdError),
    #[error(transparent)]
    Bcrypt(#[from] bcrypt::BcryptError),
    #[error(transparent)]
    Serve(#[from] crate::registry::ServeError),
    /// An operation that failed, named with what the role was doing (`copying a to b`,
    /// `role: repository`).
    #[error("{what}: {source}")]
    During {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl RoleError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RoleError {
        let what = what.into();
        move |source| RoleError::Io { what, source }
    }

    /// `map_err(RoleError::during(format!("copying {a} to {b}")))`.
    pub(crate) fn during<E>(what: impl Into<String>) -> impl FnOnce(E) -> RoleError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let what = what.into();
        move |e| RoleError::During {
            what,
            source: Box::new(e),
        }
    }
}

/// `ok_or("… needs …")`: a missing variable.
impl From<&str> for RoleError {
    fn from(s: &str) -> Self {
        RoleError::Var(s.to_string())
    }
}

// ---- helpers shared by the roles ----------------------------------------------------------

/// A variable rendered (templates resolved) as JSON; `None` when undefined.
pub(crate) fn var(call: &RoleCall<'_>, name: &str) -> Result<Option<Value>, RoleError> {
    match call.vars.map.get(name) {
        None => Ok(None),
        // Secrets and facts are used as they are: never templated (ZUUL.md §3).
        Some(v) if v.unsafe_ => Ok(Some(v.value.clone())),
        Some(v) => call
            .templar
            .render(&v.value, call.vars)
            .map(Some)
            .map_err(|e| RoleError::Var(format!("variable {name}: {e}"))),
    }
}

/// `zuul.<key>` as a string.
pub(crate) fn zuul_str(call: &RoleCall<'_>, key: &str) -> Option<String> {
    let z = call.vars.get("zuul")?;
    match z.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn outcome_with_facts(facts: Map<String, Value>) -> RoleOutcome {
    RoleOutcome {
        facts,
        changed: true,
        ..RoleOutcome::default()
    }
}

/// `{host, port, username, password, cert?}` as the registry roles pass it around.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct RegistryVar {
    pub host: String,
    pub port: Value,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub cert: Option<String>,
}

impl RegistryVar {
    pub fn host_port(&self) -> String {
        let port = match &self.port {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// Client options: credentials, and the CA from `cert` written to `dir`.
    pub fn options(&self, dir: &std::path::Path) -> Result<ClientOptions, RoleError> {
        let mut o = ClientOptions::default();
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            o.credentials = Some(crate::client::Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
            });
        }
        if let Some(cert) = &self.cert {
            std::fs::create_dir_all(dir)
                .map_err(RoleError::io(format!("creating {}", dir.display())))?;
            let path = dir.join(format!(
                "{}.crt",
                self.host_port().replace([':', '[', ']'], "_")
            ));
            std::fs::write(&path, cert)
                .map_err(RoleError::io(format!("writing {}", path.display())))?;
            o.ca_certs.push(path);
        }
        Ok(o)
    }
}

pub(crate) fn registry_var(
    call: &RoleCall<'_>,
    name: &str,
) -> Result<Option<RegistryVar>, RoleError> {
    match var(call, name)? {
        None => Ok(None),
        Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
            RoleError::Var(format!(
                "variable {name} must be {{host, port, username, password}}: {e}"
            ))
        }),
    }
}

/// The buildset registry a role must use (from the `buildset_registry` variable).
pub(crate) fn buildset_endpoint(call: &RoleCall<'_>) -> Result<Option<Endpoint>, RoleError> {
    let Some(r) = registry_var(call, "buildset_registry")? else {
        return Ok(None);
    };
    let options = r.options(&call.work_dir.join(".gantry/certs"))?;
    Ok(Some(Endpoint {
        host: r.host_port(),
        options,
    }))
}

/// The intermediate registry and where it came from (for messages): an explicit
/// `--intermediate-registry` override, else the configuration's `intermediate_registry`
/// (secret or variable), else gantry's embedded one.
pub(crate) fn intermediate_endpoint(
    env: &RoleEnv,
    call: &RoleCall<'_>,
) -> Result<(Endpoint, &'static str), RoleError> {
    if env.intermediate_override
        && let Some(e) = &env.intermediate
    {
        return Ok((
            e.clone(),
            "--intermediate-registry (overriding the configuration)",
        ));
    }
    if let Some(r) = registry_var(call, "intermediate_registry")? {
        let options = r.options(&call.work_dir.join(".gantry/certs"))?;
        return Ok((
            Endpoint {
                host: r.host_port(),
                options,
            },
            "the intermediate_registry secret",
        ));
    }
    env.intermediate
        .clone()
        .map(|e| (e, "gantry's embedded intermediate registry"))
        .ok_or_else(|| {
            RoleError::Var("no intermediate registry: define the intermediate_registry secret or pass --intermediate-registry".into())
        })
}
