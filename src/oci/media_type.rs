//! Media types of the OCI image spec and of Docker's image manifest v2 (schema 2).

/// The manifest media types gantry stores and serves, plus helpers for the others.
pub struct MediaType;

impl MediaType {
    pub const OCI_MANIFEST: &'static str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &'static str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &'static str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_EMPTY: &'static str = "application/vnd.oci.empty.v1+json";
    pub const OCI_LAYER_TAR: &'static str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &'static str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const DOCKER_MANIFEST: &'static str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &'static str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &'static str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &'static str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER: &'static str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// Manifest media types a registry accepts on PUT.
    pub const MANIFESTS: [&'static str; 4] = [
        Self::OCI_MANIFEST,
        Self::OCI_INDEX,
        Self::DOCKER_MANIFEST,
        Self::DOCKER_MANIFEST_LIST,
    ];

    /// True for index-like types whose descriptors point to other manifests.
    pub fn is_index(media_type: &str) -> bool {
        media_type == Self::OCI_INDEX || media_type == Self::DOCKER_MANIFEST_LIST
    }

    pub fn is_manifest(media_type: &str) -> bool {
        Self::MANIFESTS.contains(&media_type)
    }

    /// Layers that live outside the registry (Windows base layers, "non-distributable").
    pub fn is_foreign_layer(media_type: &str) -> bool {
        media_type == Self::DOCKER_FOREIGN_LAYER || media_type.contains(".nondistributable.")
    }
}
