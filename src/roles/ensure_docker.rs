//! `ensure-docker` / `ensure-podman`: gantry never installs anything; it reports whether a
//! Docker engine answers (the build roles then pick the docker or native builder).

use super::RoleError;
use serde_json::{Map, Value};

use super::RoleEnv;
use crate::playbook::{RoleCall, RoleOutcome};

/// True when a Docker engine socket is there (`DOCKER_HOST` or /var/run/docker.sock).
pub fn engine_present() -> bool {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h
            .strip_prefix("unix://")
            .map(|p| std::path::Path::new(p).exists())
            .unwrap_or(true),
        _ => std::path::Path::new("/var/run/docker.sock").exists(),
    }
}

pub async fn run(_env: &RoleEnv, call: &RoleCall<'_>) -> Result<RoleOutcome, RoleError> {
    let present = engine_present();
    call.log.line(&format!(
        "ensure-docker: {}",
        if present {
            "a Docker engine socket is present"
        } else {
            "no Docker engine; builds use the daemonless builder"
        }
    ));
    let mut facts = Map::new();
    facts.insert("gantry_docker_available".into(), Value::Bool(present));
    Ok(RoleOutcome {
        facts,
        changed: false,
        ..RoleOutcome::default()
    })
}
