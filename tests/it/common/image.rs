//! Images made locally: OCI image layouts written by hand (no network, no daemon), and a
//! busybox rootfs tarball for `docker import`.

use std::path::Path;

use gantry::oci::{Digest, MediaType};
use serde_json::json;

/// A blob written into an OCI layout, with its descriptor.
pub fn write_blob(layout: &Path, data: &[u8]) -> (String, u64) {
    let d = Digest::sha256(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.hex()), data).unwrap();
    (d.to_string(), data.len() as u64)
}

fn desc(media_type: &str, d: &(String, u64)) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": d.0, "size": d.1})
}

/// Writes an image manifest with `layers` (uncompressed tar media type) for a platform;
/// returns (manifest digest, manifest descriptor).
pub fn write_image(
    layout: &Path,
    layers: &[Vec<u8>],
    os: &str,
    arch: &str,
) -> (String, serde_json::Value) {
    write_image_created(layout, layers, os, arch, "2026-01-01T00:00:00Z")
}

/// Like [`write_image`], with the config's `created` time given.
pub fn write_image_created(
    layout: &Path,
    layers: &[Vec<u8>],
    os: &str,
    arch: &str,
    created: &str,
) -> (String, serde_json::Value) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| Digest::sha256(l).to_string())
        .collect();
    let config = serde_json::to_vec(&json!({
        "created": created,
        "architecture": arch,
        "os": os,
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cfg = write_blob(layout, &config);
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| desc(MediaType::OCI_LAYER_TAR, &write_blob(layout, l)))
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_MANIFEST,
        "config": desc(MediaType::OCI_CONFIG, &cfg),
        "layers": layer_descs,
    }))
    .unwrap();
    let m = write_blob(layout, &manifest);
    let mut d = desc(MediaType::OCI_MANIFEST, &m);
    d["platform"] = json!({"os": os, "architecture": arch});
    (m.0, d)
}

/// Writes `index.json` naming `entry` under `tag`.
pub fn write_index_json(layout: &Path, mut entry: serde_json::Value, tag: &str) {
    entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index =
        json!({"schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": [entry]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// A single-platform image in an OCI layout; returns the manifest digest.
pub fn single_image_layout(layout: &Path, tag: &str, layers: &[Vec<u8>]) -> String {
    let (digest, mut d) = write_image(layout, layers, "linux", "amd64");
    d.as_object_mut().unwrap().remove("platform");
    write_index_json(layout, d, tag);
    digest
}

/// A multi-arch image (OCI index of amd64 and arm64) in an OCI layout; returns
/// (index digest, [child digests]).
pub fn multiarch_layout(layout: &Path, tag: &str) -> (String, Vec<String>) {
    let mut children = Vec::new();
    let mut descs = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let layer = super::random_bytes(4096 + i, 100 + i as u64);
        let (d, desc) = write_image(layout, &[layer], "linux", arch);
        children.push(d);
        descs.push(desc);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_INDEX,
        "manifests": descs,
    }))
    .unwrap();
    let i = write_blob(layout, &index);
    write_index_json(layout, desc(MediaType::OCI_INDEX, &i), tag);
    (i.0, children)
}

/// A tarball of a root filesystem holding busybox (from Debian's busybox-static) and a
/// `/bin/sh` link: enough for `docker import` and `docker run … sh -c`.
pub fn busybox_rootfs_tar(out: &Path) -> bool {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(busybox) = busybox else {
        return false;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("echo")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("cat")).unwrap();
    super::run(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-cf")
            .arg(out)
            .arg("."),
    );
    true
}
