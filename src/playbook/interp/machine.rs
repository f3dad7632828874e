//! The lowest variables of a run: magic variables of the one-host inventory and the few
//! facts about this machine that playbooks use without gathering facts.

use serde_json::{Map, Value, json};

use crate::playbook::Vars;

/// The lowest variables: Ansible's magic variables for the one host, and the facts about
/// this machine that playbooks use without gathering facts.
pub(super) fn machine_vars() -> Vars {
    let mut v = Vars::default();
    v.set("inventory_hostname", json!("localhost"));
    v.set("inventory_hostname_short", json!("localhost"));
    v.set("ansible_check_mode", json!(false));
    // The job's inventory: one host.
    v.set(
        "groups",
        json!({"all": ["localhost"], "ungrouped": ["localhost"]}),
    );
    v.set("group_names", json!([]));
    for k in [
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_batch",
        "play_hosts",
    ] {
        v.set(k, json!(["localhost"]));
    }
    v.set("omit", json!(crate::playbook::template::OMIT));
    let env: Map<String, Value> = std::env::vars().map(|(k, x)| (k, json!(x))).collect();
    v.set(
        "ansible_user_dir",
        env.get("HOME").cloned().unwrap_or(json!("/")),
    );
    v.set(
        "ansible_user_id",
        env.get("USER").cloned().unwrap_or(json!("")),
    );
    v.set_verbatim("ansible_env", Value::Object(env));
    v.set("ansible_architecture", json!(std::env::consts::ARCH));
    v.set("ansible_system", json!("Linux"));
    v
}
