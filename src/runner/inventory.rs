//! A build's inventory from its frozen job, as Zuul's executor makes it
//! (`zuul/executor/server.py`, `getHostList` and `make_inventory_dict`): one host per node
//! name of the job's nodeset, its host variables the job's `host-vars` for that name
//! updated with `ansible_host`/`ansible_port`/`nodepool` (here: this machine), and one
//! group per nodeset group with the job's `group-vars` for it.
//!
//! A job whose nodeset is not set anywhere gets gantry's default nodeset: one node named
//! `localhost` (Zuul's own default is empty; a tenant's `base` job names a real one). A
//! nodeset with `nodes: []` is empty, as in Zuul: `hosts: all` then selects nothing and
//! `hosts: localhost` the implicit localhost.

use serde_json::{Map, Value};

use crate::job::FrozenJob;
use crate::job::config::Config;
use crate::playbook::inventory::local_host_vars;
use crate::playbook::{Group, Host, Inventory};

/// The inventory of `job`, and a note for the build log when its nodeset could not be
/// read (then the default nodeset is used).
pub fn job_inventory(config: &Config, job: &FrozenJob) -> (Inventory, Option<String>) {
    let Some(ns) = &job.nodeset else {
        return (with_vars(Inventory::localhost(), job), None);
    };
    match resolve(config, ns, 0) {
        Ok(ns) => (with_vars(from_nodeset(&ns), job), None),
        Err(why) => (
            with_vars(Inventory::localhost(), job),
            Some(format!(
                "nodeset: {why}; running on gantry's default nodeset (one node, localhost)"
            )),
        ),
    }
}

/// A nodeset name (looked up in the configuration), a mapping, or a mapping with
/// `alternatives` (the first one is used).
fn resolve(config: &Config, ns: &Value, depth: usize) -> Result<Map<String, Value>, String> {
    if depth > 8 {
        return Err("nodeset alternatives nest too deep".into());
    }
    match ns {
        Value::String(name) => match config.nodesets.get(name) {
            Some(stanza) => resolve(config, &stanza.raw, depth + 1),
            None => Err(format!("nodeset {name} is not defined here")),
        },
        Value::Object(m) => match m.get("alternatives").and_then(Value::as_array) {
            Some(alts) => match alts.first() {
                Some(first) => resolve(config, first, depth + 1),
                None => Err("nodeset alternatives are empty".into()),
            },
            None => Ok(m.clone()),
        },
        other => Err(format!(
            "nodeset must be a name or a mapping, found {other}"
        )),
    }
}

fn names(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn from_nodeset(ns: &Map<String, Value>) -> Inventory {
    let mut hosts: Vec<Host> = Vec::new();
    for node in ns
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let label = node.get("label").and_then(Value::as_str);
        // A node may have several names (Zuul: `for name in node['name']`).
        for name in names(node.get("name")) {
            if hosts.iter().any(|h| h.name == name) {
                continue;
            }
            hosts.push(Host {
                vars: local_host_vars(&name, label),
                name,
                facts: Map::new(),
            });
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    for g in ns
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = g.get("name").and_then(Value::as_str) else {
            continue;
        };
        groups.push(Group {
            name: name.to_string(),
            hosts: names(g.get("nodes")),
            vars: Map::new(),
        });
    }
    Inventory { hosts, groups }
}

/// The job's `host-vars` under each host's own (Zuul: `host_vars.update(ansible_host=…,
/// nodepool=…)`), and its `group-vars` on each group.
fn with_vars(mut inv: Inventory, job: &FrozenJob) -> Inventory {
    for h in &mut inv.hosts {
        if let Some(Value::Object(user)) = job.host_vars.get(&h.name) {
            let mut vars = user.clone();
            for (k, v) in std::mem::take(&mut h.vars) {
                vars.insert(k, v);
            }
            h.vars = vars;
        }
    }
    for g in &mut inv.groups {
        if let Some(Value::Object(vars)) = job.group_vars.get(&g.name) {
            g.vars = vars.clone();
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodeset_names_groups_and_vars() {
        let ns = json!({
            "nodes": [
                {"name": "controller", "label": "ubuntu-noble"},
                {"name": ["compute1", "compute2"], "label": "ubuntu-jammy"}
            ],
            "groups": [{"name": "computes", "nodes": ["compute1", "compute2"]}]
        });
        let inv = from_nodeset(ns.as_object().unwrap());
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["controller", "compute1", "compute2"]);
        assert_eq!(
            inv.host("compute2").unwrap().vars["nodepool"]["label"],
            "ubuntu-jammy"
        );
        assert_eq!(inv.groups[0].hosts, ["compute1", "compute2"]);
        let empty = from_nodeset(json!({"nodes": []}).as_object().unwrap());
        assert!(empty.hosts.is_empty());
    }
}
