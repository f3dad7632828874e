//! The variables a playbook sees, by precedence (ZUUL.md §3, highest last here):
//! data returned by ancestor builds < job vars (project vars already under them) <
//! secrets bound to the playbook < secret data returned by ancestors < extra vars (job
//! `extra-vars`, then `--var`) < data from outside (a trigger's payload) < `zuul` and
//! `zuul_success`, which nothing overrides. Extra vars and data are marked as Ansible
//! extra vars, so they stay above the inventory's group-vars and host-vars and above what
//! a playbook sets; facts cached from earlier playbooks are per host, in the inventory
//! (`runner/inventory.rs`).
//!
//! Secrets and secret data enter as *unsafe*: never templated, and redacted from logs.
//! Data from outside enters *verbatim*: never templated (Zuul marks it `!unsafe`), so a
//! payload holding `{{ lookup('file', …) }}` reaches the playbook as those characters.

use serde_json::{Map, Value};

use crate::job::{FrozenJob, ParentData};
use crate::playbook::Vars;

pub struct VarLayers<'a> {
    pub job: &'a FrozenJob,
    pub parent: &'a ParentData,
    pub secrets: &'a Map<String, Value>,
    pub extra: &'a Map<String, Value>,
    /// Values from a request (trigger payloads): verbatim.
    pub data: &'a Map<String, Value>,
    pub zuul: &'a Value,
    /// `Some` in post-run and cleanup playbooks: whether the run phase succeeded.
    pub success: Option<bool>,
}

pub fn assemble(l: &VarLayers<'_>) -> Vars {
    let mut v = Vars::default();
    for (k, x) in &l.parent.data {
        v.set(k.clone(), x.clone());
    }
    for (k, x) in &l.job.vars {
        v.set(k.clone(), x.clone());
    }
    for (k, x) in l.secrets {
        v.set_unsafe(k.clone(), x.clone());
    }
    for (k, x) in &l.parent.secret_data {
        v.set_unsafe(k.clone(), x.clone());
    }
    for (k, x) in l.job.extra_vars.iter().chain(l.extra.iter()) {
        v.set_extra(k.clone(), x.clone());
    }
    for (k, x) in l.data {
        v.set_extra_verbatim(k.clone(), x.clone());
    }
    v.set("zuul", l.zuul.clone());
    if let Some(s) = l.success {
        v.set("zuul_success", Value::Bool(s));
    }
    v
}
