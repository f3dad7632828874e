//! gantry: Zuul-style gating for container images in one binary.
//!
//! Module walls follow `DESIGN.md`: `oci` and `job` are pure; `registry` is the server,
//! `client` the client; `cli` only parses and calls the library.
#![forbid(unsafe_code)]

pub mod build;
pub mod cli;
pub mod client;
pub mod job;
pub mod logging;
pub mod oci;
pub mod playbook;
pub mod registry;
pub mod report;
pub mod roles;
pub mod runner;
pub mod server;
pub mod text;
pub mod trigger;
