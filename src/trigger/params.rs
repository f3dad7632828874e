//! The variables a triggered run receives: the image (owner, image, repository name,
//! namespace, tag, digest, full reference `registry/repo@sha256:…`), the event (id,
//! source), GoCD's docker poller names (`GO_PACKAGE_<NAME>_LABEL`,
//! `GO_PACKAGE_<NAME>_DOCKER_IMAGE`, `GO_REPO_<NAME>_DOCKER_REGISTRY_NAME`) and the
//! trigger's own parameters. `trigger_environment` holds the same as environment-style
//! names, for a play's `environment:`.
//!
//! Everything but the trigger's `parameters` (written by the operator) comes from a
//! request or a registry: it is handed over as *data*, never rendered as a template
//! ([`Variables::data`], Zuul's `!unsafe`).
//!
//! Must not: include credentials (endpoints' credentials stay in gantry).

use serde_json::{Map, Value};

use super::config::Trigger;
use super::payload::Push;

/// `my-app.v2` → `MY_APP_V2` (GoCD's names).
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The variables of one run.
#[derive(Clone, Debug, Default)]
pub struct Variables {
    /// The trigger's configured `parameters` (templated like job vars).
    pub parameters: Map<String, Value>,
    /// Everything from the payload and the registry: verbatim.
    pub data: Map<String, Value>,
}

/// Every variable of a run for `push` resolved to `digest`.
pub fn variables(
    trigger: &Trigger,
    event_id: i64,
    registry: &str,
    push: &Push,
    digest: &str,
) -> Variables {
    let (namespace, name) = match push.repository.rsplit_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => (String::new(), push.repository.clone()),
    };
    let owner = push
        .owner
        .clone()
        .unwrap_or_else(|| namespace.split('/').next().unwrap_or("").to_string());
    let reference = format!("{registry}/{}@{digest}", push.repository);
    let fields: Vec<(&str, String)> = vec![
        ("owner", owner),
        ("image", push.repository.clone()),
        ("repository", push.repository.clone()),
        ("name", name),
        ("namespace", namespace),
        ("tag", push.tag.clone()),
        ("digest", digest.to_string()),
        ("reference", reference),
        ("registry", registry.to_string()),
        ("event_id", event_id.to_string()),
        ("source", trigger.source.as_str().to_string()),
        ("trigger", trigger.name.clone()),
        ("pusher", push.pusher.clone().unwrap_or_default()),
    ];
    let mut vars = Map::new();
    let mut env = Map::new();
    for (k, v) in &fields {
        vars.insert(format!("trigger_{k}"), Value::String(v.clone()));
        env.insert(
            format!("GANTRY_TRIGGER_{}", env_name(k)),
            Value::String(v.clone()),
        );
    }
    let n = env_name(&trigger.name);
    let gocd = [
        (format!("GO_PACKAGE_{n}_LABEL"), push.tag.clone()),
        (
            format!("GO_PACKAGE_{n}_DOCKER_IMAGE"),
            push.repository.clone(),
        ),
        (
            format!("GO_REPO_{n}_DOCKER_REGISTRY_NAME"),
            registry.to_string(),
        ),
    ];
    for (k, v) in gocd {
        vars.insert(k.clone(), Value::String(v.clone()));
        env.insert(k, Value::String(v));
    }
    // Every command of the run sees these in its environment; `trigger_environment` keeps
    // them available to playbooks by name too.
    vars.insert(
        crate::playbook::GANTRY_ENVIRONMENT.into(),
        Value::Object(env.clone()),
    );
    vars.insert("trigger_environment".into(), Value::Object(env));
    Variables {
        parameters: trigger.parameters.clone(),
        data: vars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gocd_names() {
        assert_eq!(env_name("my-app.v2"), "MY_APP_V2");
    }
}
