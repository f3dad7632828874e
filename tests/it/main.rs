//! Integration tests: one binary, real servers on 127.0.0.1, real clients.

mod ansible_exec;
mod build;
mod client;
mod common;
mod job;
mod playbook;
mod registry_gc;
mod registry_interop;
mod registry_spec;
mod run;
mod trigger;
