#!/usr/bin/env python3
"""Writes an OCI image layout with N layers of SIZE random bytes (uncompressed tar media
type, so skopeo --preserve-digests moves the bytes unchanged).

usage: mklayout.py DIR TAG LAYERS SIZE_BYTES
"""
import hashlib, json, os, sys

def blob(root, data):
    d = hashlib.sha256(data).hexdigest()
    p = os.path.join(root, "blobs", "sha256")
    os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}

def main():
    root, tag, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    layers = []
    diff_ids = []
    for i in range(n):
        data = os.urandom(size)
        b = blob(root, data)
        layers.append(dict(mediaType="application/vnd.oci.image.layer.v1.tar", **b))
        diff_ids.append(b["digest"])
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    c = blob(root, cfg)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **c),
                           "layers": layers}).encode()
    m = blob(root, manifest)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [dict(
            mediaType="application/vnd.oci.image.manifest.v1+json",
            annotations={"org.opencontainers.image.ref.name": tag}, **m)]}, f)

main()
