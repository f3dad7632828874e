//! Playbooks: the model of plays and tasks, the interpreter, templating and modules.
//!
//! Owns running Ansible-style playbooks locally, in a job's work directory. Must not know
//! about registries or builds (native roles live in `roles/`), nor print: results go back
//! to the runner as data and log lines.

pub mod template;
