//! Integration tests: one binary.
mod job;
