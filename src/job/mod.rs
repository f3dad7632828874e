//! Zuul-compatible job configuration, freezing, secrets and the job graph.
//!
//! Owns: everything between a project's `zuul.yaml` and the list of builds a runner should
//! start — loading with positions ([`config`]), inheritance ([`freeze`]), secrets
//! ([`secrets`]), the job graph ([`graph`]) and `provides`/`requires` across changes ahead
//! ([`queue`]). Must not: do async work, use the network, or read anything but the
//! configuration files and key files it is pointed at (DESIGN.md: `job` is pure).
//!
//! ```text
//! load(dir) ─▶ Config ─▶ freeze(job, pipeline) ─▶ FrozenJob ─▶ JobGraph::build ─▶ ready(states)
//!                                                    │                             to_skip(result)
//!                        changes ahead + BuildRecords ┴─▶ resolve_requirements ─▶ Run | Wait | Fail
//! ```

pub mod config;
pub mod freeze;
pub mod graph;
pub mod keys;
pub mod matchers;
pub mod pipelines;
pub mod queue;
pub mod secrets;

pub use config::{Config, ConfigError, ConfigErrors, ConfigRepo, LoadOptions, Loc, load};
pub use freeze::{FreezeError, FrozenJob, FrozenPlaybook, freeze, freeze_job};
pub use graph::{
    BuildState, GraphError, GraphErrors, ItemRef, JobGraph, ParentData, Returned, Skip,
};
pub use queue::{
    Artifact, BuildRecord, BuildResult, QueueChange, Requirements, resolve_requirements,
};
