//! The files `ansible-playbook` reads for one playbook, as Zuul's executor writes them:
//! the inventory (the job's nodes, all on this machine with `ansible_connection: local`,
//! job variables as `all.vars`), the extra-vars file (secrets, `zuul`, `zuul_success`,
//! every string marked `!unsafe` so Ansible never templates them) and `ansible.cfg`.
//!
//! Pure text generation: no I/O here.

use std::path::Path;

use serde_json::{Map, Value};

use crate::playbook::Vars;

/// Variables Zuul passes as extra vars (which nothing overrides).
const EXTRA: &[&str] = &["zuul", "zuul_success"];

/// Splits the runner's variables into inventory `all.vars` (templated by Ansible, like
/// job vars in Zuul's inventory) and extra vars (secrets and Zuul's own, never templated).
pub fn split_vars(vars: &Vars) -> (Map<String, Value>, Map<String, Value>) {
    let mut inventory = Map::new();
    let mut extra = Map::new();
    for (k, v) in &vars.map {
        if v.secret || EXTRA.contains(&k.as_str()) {
            extra.insert(k.clone(), v.value.clone());
        } else {
            inventory.insert(k.clone(), v.value.clone());
        }
    }
    (inventory, extra)
}

/// The inventory: every node (`nodes`, `localhost` when the job names none) on this
/// machine. JSON is YAML, so the variables are written as JSON.
pub fn inventory(nodes: &[String], vars: &Map<String, Value>) -> String {
    let names: Vec<&str> = if nodes.is_empty() {
        vec!["localhost"]
    } else {
        nodes.iter().map(String::as_str).collect()
    };
    let mut hosts = Map::new();
    for n in names {
        hosts.insert(
            n.to_string(),
            serde_json::json!({
                "ansible_connection": "local",
                "ansible_host": "127.0.0.1",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            }),
        );
    }
    let all = serde_json::json!({"all": {"hosts": hosts, "vars": vars}});
    serde_json::to_string_pretty(&all).unwrap_or_default()
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
        v.set_unsafe("creds", json!({"password": "{{ no }}", "n": [1, "a\"b"]}));
        let (inv, extra) = split_vars(&v);
        assert_eq!(inv.keys().collect::<Vec<_>>(), vec!["image"]);
        assert_eq!(extra.len(), 2);
        assert_eq!(
            unsafe_yaml(&extra["creds"]),
            "{\"password\": !unsafe \"{{ no }}\", \"n\": [1, !unsafe \"a\\\"b\"]}\n"
        );
        let text = inventory(&["ubuntu-noble".into()], &inv);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back["all"]["hosts"]["ubuntu-noble"]["ansible_connection"],
            "local"
        );
        assert_eq!(back["all"]["vars"]["image"], "{{ x }}");
    }
}
