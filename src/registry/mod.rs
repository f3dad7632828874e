//! The OCI distribution registry server (placeholder while the server lands).
