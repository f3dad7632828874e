//! Integration tests: one binary, real servers on 127.0.0.1, real clients.

mod ansible_exec;
mod build;
mod build_hostile;
mod client;
mod common;
mod daily;
mod daily_ci;
mod daily_docker;
mod daily_tls;
mod hostile;
mod job;
mod job_tenant;
mod playbook;
mod playbook_diff;
mod registry_gc;
mod registry_gc_stress;
mod registry_interop;
mod registry_ops;
mod registry_spec;
mod run;
mod serve_scale;
mod serve_scale_pg;
mod serve_trust;
mod trigger;
mod zuul_graph;
mod zuul_roles;
