#!/usr/bin/env python3
"""Writes the fuzz fixture (a tiny valid image the harnesses build their layouts from) and the seed
corpora. Deterministic: running it again gives the same bytes. Usage: gen_corpus.py [OUT_DIR]
(default: the directory of this script; writes fixture/ and corpus/<target>/ there)."""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MTIME = 1700000000


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mtime = MTIME
            ti.mode = e.get("mode", 0o644)
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.linkname = e.get("link", "")
            ti.pax_headers = e.get("pax", {})
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    # Keep the two end-of-archive blocks, drop the record padding after them: small seeds fuzz faster.
    b = buf.getvalue().rstrip(b"\0")
    return b + b"\0" * (-len(b) % 512 + 1024)


def gz(b):
    return gzip.compress(b, compresslevel=6, mtime=0)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    D, F, S, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
    layer = make_tar([
        {"name": "bin", "type": D, "mode": 0o755},
        {"name": "bin/busybox", "data": b"\x7fELF fake busybox\n", "mode": 0o755},
        {"name": "bin/sh", "type": S, "link": "busybox"},
        {"name": "bin/ls", "type": L, "link": "bin/busybox"},
        {"name": "etc", "type": D, "mode": 0o755},
        {"name": "etc/hello.txt", "data": b"hello\n"},
        {"name": "usr/bin/ping", "data": b"ping\n", "mode": 0o4755,
         "pax": {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00"}},
        {"name": "tmp", "type": D, "mode": 0o1777},
    ])
    diff_id = sha(layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "seed layer"}, {"created_by": "ENV", "empty_layer": True}],
    }, separators=(",", ":")).encode()
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff_id, "size": len(layer)}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [layer_desc],
    }, separators=(",", ":")).encode()
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
             "size": len(manifest)}
    index = json.dumps({"schemaVersion": 2, "manifests": [
        dict(mdesc, annotations={"org.opencontainers.image.ref.name": "latest"},
             platform={"architecture": "amd64", "os": "linux"})]}).encode()

    fixture = os.path.join(out, "fixture")
    os.makedirs(fixture, exist_ok=True)
    for name, data in [("layer.tar", layer), ("config.json", config), ("manifest.json", manifest),
                       ("index.json", index)]:
        with open(os.path.join(fixture, name), "wb") as f:
            f.write(data)

    cfg_hex = sha(config)[7:]
    seeds = {
        "fuzz_index": [
            index,
            json.dumps({"schemaVersion": 2, "manifests": [mdesc]}).encode(),
            json.dumps({"schemaVersion": 2, "manifests": [
                dict(mdesc, platform={"architecture": "arm64", "os": "linux"}),
                dict(mdesc, platform={"architecture": "amd64", "os": "linux", "variant": "v1"})]}).encode(),
            json.dumps({"schemaVersion": 2, "manifests": [
                dict(mdesc, annotations={"org.opencontainers.image.ref.name": "a"}),
                dict(mdesc, annotations={"org.opencontainers.image.ref.name": "b"})]}).encode(),
            b"{}", b"[]",
        ],
        "fuzz_manifest": [
            manifest,
            json.loads(manifest) | {"mediaType": "application/vnd.docker.distribution.manifest.v2+json"},
            json.dumps({"schemaVersion": 2, "config": json.loads(manifest)["config"], "layers": []}).encode(),
            json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [mdesc]}).encode(),
        ],
        "fuzz_config": [
            config,
            json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                        "diff_ids": [diff_id]}, "config": {"User": "1000", "ExposedPorts": {"80/tcp": {}},
                        "Healthcheck": {"Test": ["CMD", "true"]}, "Labels": {"a": "b"}}}).encode(),
            json.dumps({"architecture": "amd64", "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": []}}).encode(),
        ],
        "fuzz_docker_manifest": [
            json.dumps([{"Config": cfg_hex + ".json", "RepoTags": ["seed:latest"],
                         "Layers": ["layer.tar"]}]).encode(),
            json.dumps([{"Config": "blobs/sha256/" + cfg_hex, "RepoTags": ["a:1", "docker.io/library/b:2"],
                         "Layers": ["blobs/sha256/" + diff_id[7:]]}]).encode(),
            json.dumps([{"Config": cfg_hex + ".json", "RepoTags": ["x:1"], "Layers": ["layer.tar"]},
                        {"Config": cfg_hex + ".json", "RepoTags": None, "Layers": []}]).encode(),
        ],
        "fuzz_tar": [
            layer,
            gz(layer),
            make_tar([
                {"name": "a", "type": D, "mode": 0o755},
                {"name": "a/.wh..wh..opq"},
                {"name": "a/.wh.gone"},
                {"name": "a/dev", "type": H},
                {"name": "a/" + "long" * 40, "data": b"x" * 600},
            ]),
            gz(make_tar([{"name": "./x/y", "data": b"data"}], fmt=tarfile.GNU_FORMAT)),
            make_tar([{"name": "f", "data": b"1"}], fmt=tarfile.USTAR_FORMAT)[:700],
        ],
    }
    for target, items in seeds.items():
        d = os.path.join(out, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for i, data in enumerate(items):
            if isinstance(data, dict):
                data = json.dumps(data, separators=(",", ":")).encode()
            with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
