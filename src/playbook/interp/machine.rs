//! The lowest variables of a run: the few facts about this machine that playbooks use
//! without gathering facts, and the magic variables of the host a play runs on
//! (`inventory_hostname`, `group_names`, `groups`, `hostvars`, `ansible_play_hosts`).

use serde_json::{Map, Value, json};

use crate::playbook::Vars;
use crate::playbook::inventory::Inventory;

/// The lowest variables: the facts about this machine that playbooks use without
/// gathering facts.
pub(super) fn machine_vars() -> Vars {
    let mut v = Vars::default();
    v.set("ansible_check_mode", json!(false));
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

/// `machine` with the magic variables of `host` in a play on `play_hosts`. `state(h)`:
/// the facts and registered results of host `h` so far (for `hostvars`).
pub(super) fn magic_vars<'s>(
    machine: &Vars,
    inv: &Inventory,
    host: &str,
    play_hosts: &[String],
    runner: &Vars,
    state: impl Fn(&str) -> Option<&'s Map<String, Value>>,
) -> Vars {
    let mut v = machine.clone();
    v.set("inventory_hostname", json!(host));
    v.set(
        "inventory_hostname_short",
        json!(host.split('.').next().unwrap_or(host)),
    );
    v.set("groups", inv.groups_var());
    v.set("group_names", json!(inv.group_names(host)));
    for k in [
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_batch",
        "play_hosts",
    ] {
        v.set(k, json!(play_hosts));
    }
    // hostvars: every inventory host's variables (job vars, inventory vars, cached
    // facts, what it set and registered so far), as Ansible's HostVars shows them.
    let mut hostvars = Map::new();
    let mut names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    // ansible-core 2.16 lists the implicit localhost in `hostvars` whatever the inventory.
    for extra in [host, "localhost"] {
        if !names.contains(&extra) {
            names.push(extra);
        }
    }
    for name in names {
        let mut m = Map::new();
        for (k, var) in &runner.map {
            if !var.secret {
                m.insert(k.clone(), var.value.clone());
            }
        }
        m.extend(inv.inventory_vars(name));
        if let Some(h) = inv.host(name) {
            m.extend(h.facts.clone());
        }
        if let Some(s) = state(name) {
            m.extend(s.clone());
        }
        m.insert("inventory_hostname".into(), json!(name));
        m.insert(
            "inventory_hostname_short".into(),
            json!(name.split('.').next().unwrap_or(name)),
        );
        m.insert("group_names".into(), json!(inv.group_names(name)));
        hostvars.insert(name.to_string(), Value::Object(m));
    }
    v.set_verbatim("hostvars", Value::Object(hostvars));
    v
}
