//! `run-buildset-registry` and `use-buildset-registry` (ZUUL.md §9).
//!
//! run: starts gantry's registry in-process — TLS from a CA made for it (SANs: 127.0.0.1,
//! the host, `zuul-jobs.buildset-registry`), user `zuul` with a random 20-character
//! password — and returns `buildset_registry: {host, port, username, password, cert}` as
//! a fact and as secret data. It lives until the build that started it ends.
//!
//! use: writes the host configuration that makes container tools use it first, under
//! [`RoleEnv::host_root`]: docker `certs.d/<host:port>/ca.crt`, `config.json` auth,
//! daemon.json `registry-mirrors`, podman/cri-o `registries.conf` mirrors (docker.io
//! images without prefix, others under `/<registry>/`), containerd `hosts.toml` and
//! BuildKit `buildkitd.toml`.

use super::RoleError;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{RoleEnv, RunningRegistry, outcome_with_facts, registry_var};
use crate::playbook::{Returned, RoleCall, RoleOutcome};
use crate::registry::{Auth, Htpasswd, Registry, RegistryConfig};

/// The name zuul-jobs gives the buildset registry in certificates and configuration.
pub const ALIAS: &str = "zuul-jobs.buildset-registry";

/// bcrypt cost for the per-buildset password: the password is 20 random characters
/// (~119 bits), so a low cost loses nothing and keeps start-up in milliseconds.
const BCRYPT_COST: u32 = 5;

pub async fn run_registry(env: &RoleEnv, call: &RoleCall<'_>) -> Result<RoleOutcome, RoleError> {
    let started = std::time::Instant::now();
    let build = super::zuul_str(call, "build").unwrap_or_else(|| "unknown".into());
    let dir = tempfile::Builder::new()
        .prefix("gantry-buildset-registry-")
        .tempdir()
        .map_err(RoleError::io("creating the registry directory"))?;
    let t = std::time::Instant::now();
    let password = crate::registry::auth::htpasswd::random_password(20);
    let line = crate::registry::auth::htpasswd::entry("zuul", &password, BCRYPT_COST)?;
    let htpasswd = Htpasswd::parse(&line, Path::new("<buildset registry>"))?;
    tracing::debug!(
        "run-buildset-registry: password and bcrypt {:.1} ms",
        super::ms(t)
    );
    let port: u16 = match super::var(call, "buildset_registry_port")? {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as u16,
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let t = std::time::Instant::now();
    let tls = crate::registry::tls::self_signed(
        &dir.path().join("tls"),
        &["127.0.0.1".to_string(), ALIAS.to_string()],
    )?;
    let cert = std::fs::read_to_string(&tls.ca_cert)
        .map_err(RoleError::io(format!("reading {}", tls.ca_cert.display())))?;
    tracing::debug!(
        "run-buildset-registry: CA and certificate {:.1} ms",
        super::ms(t)
    );
    let t = std::time::Instant::now();
    let mut cfg = RegistryConfig::new(dir.path().join("data"));
    cfg.auth = Auth {
        htpasswd: Some(Arc::new(htpasswd)),
        ..Auth::default()
    };
    cfg.tls = Some(crate::registry::tls::server_config(&tls.cert, &tls.key)?);
    let registry = Registry::new(cfg)?;
    let (addr, task) = registry
        .spawn(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(RoleError::during("starting the buildset registry"))?;
    tracing::debug!(
        "run-buildset-registry: storage, TLS config, bind {:.1} ms",
        super::ms(t)
    );
    env.keep_registry(&build, RunningRegistry { task, _dir: dir });
    call.log.line(&format!(
        "run-buildset-registry: serving on https://{addr} (user zuul), ready in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    let value = json!({
        "host": "127.0.0.1",
        "port": addr.port(),
        "username": "zuul",
        "password": password,
        "cert": cert,
    });
    let mut facts = Map::new();
    facts.insert("buildset_registry".into(), value.clone());
    let mut secret_data = Map::new();
    secret_data.insert("buildset_registry".into(), value);
    let mut out = outcome_with_facts(facts);
    out.returned = Returned {
        data: Map::new(),
        secret_data,
    };
    Ok(out)
}

fn write(path: &Path, content: &str) -> Result<(), RoleError> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(RoleError::io(format!("creating {}", p.display())))?;
    }
    std::fs::write(path, content).map_err(RoleError::io(format!("writing {}", path.display())))
}

pub async fn use_registry(env: &RoleEnv, call: &RoleCall<'_>) -> Result<RoleOutcome, RoleError> {
    let r = registry_var(call, "buildset_registry")?
        .ok_or("use-buildset-registry needs the buildset_registry variable (run run-buildset-registry first)")?;
    let host = r.host_port();
    let port = host.rsplit(':').next().unwrap_or("").to_string();
    let root = &env.host_root;
    let cert = r.cert.clone().unwrap_or_default();
    // Docker: trust the CA under both names, log in, mirror docker.io.
    for name in [host.clone(), format!("{ALIAS}:{port}")] {
        write(
            &root.join("etc/docker/certs.d").join(&name).join("ca.crt"),
            &cert,
        )?;
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        r.username.clone().unwrap_or_default(),
        r.password.clone().unwrap_or_default()
    ));
    let config_path = root.join("root/.docker/config.json");
    let mut config: Value = std::fs::read(&config_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}));
    for name in [host.clone(), format!("{ALIAS}:{port}")] {
        config["auths"][name] = json!({"auth": auth});
    }
    write(
        &config_path,
        &serde_json::to_string_pretty(&config).unwrap_or_default(),
    )?;
    write(
        &root.join("etc/docker/daemon.json"),
        &serde_json::to_string_pretty(&json!({"registry-mirrors": [format!("https://{host}/")]}))
            .unwrap_or_default(),
    )?;
    // podman / cri-o / skopeo: registries.conf with mirrors.
    let mut conf = String::from(
        "# written by gantry use-buildset-registry\nunqualified-search-registries = [\"docker.io\"]\n",
    );
    for registry in [
        "docker.io",
        "quay.io",
        "gcr.io",
        "ghcr.io",
        "registry.k8s.io",
    ] {
        let location = if registry == "docker.io" {
            host.clone()
        } else {
            format!("{host}/{registry}")
        };
        conf.push_str(&format!(
            "\n[[registry]]\nprefix = \"{registry}\"\nlocation = \"{registry}\"\n[[registry.mirror]]\nlocation = \"{location}\"\n"
        ));
    }
    write(&root.join("etc/containers/registries.conf"), &conf)?;
    write(
        &root
            .join("etc/containers/certs.d")
            .join(&host)
            .join("ca.crt"),
        &cert,
    )?;
    // containerd and BuildKit.
    write(
        &root.join("etc/containerd/certs.d/docker.io/hosts.toml"),
        &format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"/etc/docker/certs.d/{host}/ca.crt\"\n"
        ),
    )?;
    write(
        &root.join("etc/buildkit/buildkitd.toml"),
        &format!(
            "[registry.\"docker.io\"]\n  mirrors = [\"{host}\"]\n\n[registry.\"{host}\"]\n  ca = [\"/etc/docker/certs.d/{host}/ca.crt\"]\n"
        ),
    )?;
    call.log.line(&format!(
        "use-buildset-registry: host configuration for {host} written under {}",
        root.display()
    ));
    Ok(RoleOutcome {
        changed: true,
        ..RoleOutcome::default()
    })
}
