//! Pure text helpers shared by the configuration readers (`job`, `playbook`, `trigger`).
//!
//! Owns: the YAML loader that keeps positions and tags ([`yaml`]) and "did you mean"
//! suggestions ([`suggest`]). Must not: know about Zuul, playbooks or triggers, do I/O, or
//! import any other gantry module (everything that reads configuration sits above it).

pub mod suggest;
pub mod yaml;
