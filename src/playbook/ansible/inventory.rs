//! The files `ansible-playbook` reads for one playbook, as Zuul's executor writes them:
//! the inventory (the job's nodes, all on this machine with `ansible_connection: local`,
//! job variables as `all.vars`, groups with their group-vars), the extra-vars files
//! (job `extra-vars` and `--var`; and secrets, trigger data, `zuul`, `zuul_success`, every
//! string marked `!unsafe` so Ansible never templates them) and `ansible.cfg`.
//!
//! Pure text generation: no I/O here.

use std::path::Path;

use serde_json::{Map, Value};

use serde_json::json;

use crate::playbook::{Inventory, Vars};

/// Variables Zuul passes as extra vars (which nothing overrides).
const EXTRA: &[&str] = &["zuul", "zuul_success"];

/// The runner's variables split the way Zuul hands them to Ansible.
pub struct SplitVars {
    /// Inventory `all.vars`: job vars, parent data (templated by Ansible).
    pub inventory: Map<String, Value>,
    /// Extra vars Ansible templates: job `extra-vars`, `--var`.
    pub extra: Map<String, Value>,
    /// Extra vars never templated (`!unsafe`): secrets, trigger data, `zuul`.
    pub unsafe_extra: Map<String, Value>,
}

/// Splits the runner's variables into inventory `all.vars`, templated extra vars and
/// `!unsafe` extra vars.
pub fn split_vars(vars: &Vars) -> SplitVars {
    let mut out = SplitVars {
        inventory: Map::new(),
        extra: Map::new(),
        unsafe_extra: Map::new(),
    };
    for (k, v) in &vars.map {
        let to = if v.secret || EXTRA.contains(&k.as_str()) || (v.extra && v.unsafe_) {
            &mut out.unsafe_extra
        } else if v.extra {
            &mut out.extra
        } else {
            &mut out.inventory
        };
        to.insert(k.clone(), v.value.clone());
    }
    out
}

/// The inventory file (JSON is YAML): every host with its host variables (Zuul's
/// `host_vars`: `nodepool`, connection, the job's `host-vars`), job variables as
/// `all.vars`, each group as a child of `all` with the job's `group-vars`
/// (`make_inventory_dict`). An empty nodeset gives an empty `hosts`.
pub fn inventory(inv: &Inventory, vars: &Map<String, Value>) -> String {
    let mut hosts = Map::new();
    for h in &inv.hosts {
        let mut hv = h.vars.clone();
        hv.entry("ansible_python_interpreter")
            .or_insert_with(|| json!("{{ ansible_playbook_python }}"));
        hosts.insert(h.name.clone(), Value::Object(hv));
    }
    let mut all = Map::new();
    all.insert("hosts".into(), Value::Object(hosts));
    all.insert("vars".into(), Value::Object(vars.clone()));
    if !inv.groups.is_empty() {
        let mut children = Map::new();
        for g in &inv.groups {
            let members: Map<String, Value> =
                g.hosts.iter().map(|h| (h.clone(), Value::Null)).collect();
            children.insert(g.name.clone(), json!({"hosts": members, "vars": g.vars}));
        }
        all.insert("children".into(), Value::Object(children));
    }
    serde_json::to_string_pretty(&json!({ "all": all })).unwrap_or_default()
}

/// A YAML flow document of `v` with every string tagged `!unsafe` (Zuul marks secrets the
/// same way). JSON strings are valid YAML double-quoted scalars.
pub fn unsafe_yaml(v: &Value) -> String {
    let mut out = String::new();
    write_unsafe(v, &mut out);
    out.push('\n');
    out
}

fn write_unsafe(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str("!unsafe ");
            out.push_str(&Value::String(s.clone()).to_string());
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_unsafe(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_unsafe(x, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Directories `ansible.cfg` points at.
pub struct CfgPaths<'a> {
    /// The project's roles first (Ansible also looks beside the playbook), gantry's
    /// native stand-ins last: a role the project ships always wins.
    pub roles: Vec<&'a Path>,
    pub action_plugins: &'a Path,
    /// gantry's `local` (commands and modules in the work directory, as on a Zuul node).
    pub connection_plugins: &'a Path,
    pub facts: &'a Path,
    pub local_tmp: &'a Path,
}

pub fn ansible_cfg(p: &CfgPaths<'_>) -> String {
    let roles = p
        .roles
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    format!(
        "[defaults]\n\
         roles_path = {roles}\n\
         action_plugins = {}\n\
         connection_plugins = {}\n\
         gathering = explicit\n\
         fact_caching = jsonfile\n\
         fact_caching_connection = {}\n\
         retry_files_enabled = False\n\
         host_key_checking = False\n\
         stdout_callback = default\n\
         deprecation_warnings = False\n\
         interpreter_python = auto_silent\n\
         local_tmp = {}\n\
         nocows = 1\n",
        p.action_plugins.display(),
        p.connection_plugins.display(),
        p.facts.display(),
        p.local_tmp.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_zuul_are_extra_vars_and_unsafe() {
        let mut v = Vars::default();
        v.set("image", json!("{{ x }}"));
        v.set("zuul", json!({"job": "j"}));
        v.set_extra("tag", json!("{{ y }}"));
        v.set_unsafe("creds", json!({"password": "{{ no }}", "n": [1, "a\"b"]}));
        let split = split_vars(&v);
        assert_eq!(split.inventory.keys().collect::<Vec<_>>(), vec!["image"]);
        assert_eq!(split.extra.keys().collect::<Vec<_>>(), vec!["tag"]);
        assert_eq!(split.unsafe_extra.len(), 2);
        assert_eq!(
            unsafe_yaml(&split.unsafe_extra["creds"]),
            "{\"password\": !unsafe \"{{ no }}\", \"n\": [1, !unsafe \"a\\\"b\"]}\n"
        );
        let mut inv = Inventory::localhost();
        inv.hosts[0].name = "ubuntu-noble".into();
        inv.groups.push(crate::playbook::Group {
            name: "g".into(),
            hosts: vec!["ubuntu-noble".into()],
            vars: Map::from_iter([("k".to_string(), json!(1))]),
        });
        let text = inventory(&inv, &split.inventory);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back["all"]["hosts"]["ubuntu-noble"]["ansible_connection"],
            "local"
        );
        assert_eq!(back["all"]["vars"]["image"], "{{ x }}");
        assert_eq!(back["all"]["children"]["g"]["vars"]["k"], 1);
    }
}
