#!/usr/bin/env python3
"""Builds the benchmark image once: an OCI layout of ~300 MB uncompressed in 4 gzip layers, made of
this machine's /usr/share (many small text files), /usr/lib (large shared libraries) and /usr/bin
(binaries), which compress like real images; the last layer overwrites some libraries, deletes some
files (whiteouts) and makes one directory opaque. Usage: make_image.py OUT_DIR [MB_TOTAL=300]"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

MB = 1 << 20


def select(root, budget, skip_prefixes=()):
    """Paths (relative to /) of dirs, files and symlinks under root, sorted, up to budget bytes."""
    out, used = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if any(dirpath.startswith(p) for p in skip_prefixes):
            dirnames[:] = []
            continue
        out.append(dirpath.lstrip("/"))
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if not (os.path.isfile(p) or os.path.islink(p)) or not os.access(p, os.R_OK):
                continue
            size = 0 if os.path.islink(p) else st.st_size
            # Skip what does not fit (and single files too big to be typical), keep walking.
            if used + size > budget or size > budget // 8:
                continue
            out.append(p.lstrip("/"))
            used += size
            if used > budget - MB:
                return out, used
    return out, used


def write_layer(blobs, chdir, names):
    """tar of names (relative to chdir), gzip -6 (what Docker and go-containerregistry use)."""
    with tempfile.NamedTemporaryFile("wb", delete=False) as lst:
        lst.write(b"\0".join(n.encode() for n in names) + b"\0")
    tmp = os.path.join(blobs, "tmp.gz")
    tar = subprocess.Popen(["tar", "-C", chdir, "--numeric-owner", "--no-recursion", "--null", "-T", lst.name,
                            "-cf", "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with open(tmp, "wb") as out:
        gz = subprocess.Popen(["pigz" if shutil.which("pigz") else "gzip", "-6", "-n", "-c"],
                              stdin=subprocess.PIPE, stdout=out)
        diff, raw = hashlib.sha256(), 0
        while True:
            chunk = tar.stdout.read(MB)
            if not chunk:
                break
            diff.update(chunk)
            raw += len(chunk)
            gz.stdin.write(chunk)
        gz.stdin.close()
        gz.wait()
    tar.wait()
    os.unlink(lst.name)
    blob = hashlib.sha256()
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(MB), b""):
            blob.update(chunk)
    digest = "sha256:" + blob.hexdigest()
    os.rename(tmp, os.path.join(blobs, digest[7:]))
    return {"digest": digest, "size": os.path.getsize(os.path.join(blobs, digest[7:])),
            "diff_id": "sha256:" + diff.hexdigest(), "uncompressed": raw}


def put_json(blobs, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest[7:]), "wb") as f:
        f.write(data)
    return digest, len(data)


def main():
    out = sys.argv[1]
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    tmp_out = out + ".tmp"
    shutil.rmtree(tmp_out, ignore_errors=True)
    blobs = os.path.join(tmp_out, "blobs", "sha256")
    os.makedirs(blobs)

    share, _ = select("/usr/share", total * 30 // 100 * MB)
    libs, _ = select("/usr/lib/x86_64-linux-gnu", total * 37 // 100 * MB)
    bins, _ = select("/usr/bin", total * 23 // 100 * MB)
    layers = [("COPY /usr/share", "/", share), ("COPY /usr/lib", "/", libs), ("COPY /usr/bin", "/", bins)]

    # Layer 4: rewrite ~10% of the libraries, delete some docs, make one share dir opaque.
    stage = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)))
    names, used = [], 0
    lib_files = [p for p in libs if os.path.isfile("/" + p) and not os.path.islink("/" + p)]
    for p in lib_files[::7]:
        if used > total * 10 // 100 * MB:
            break
        os.makedirs(os.path.join(stage, os.path.dirname(p)), exist_ok=True)
        shutil.copy2("/" + p, os.path.join(stage, p))
        used += os.path.getsize("/" + p)
        names.append(p)
    share_files = [p for p in share if os.path.isfile("/" + p)]
    for p in share_files[::50]:
        wh = os.path.join(os.path.dirname(p), ".wh." + os.path.basename(p))
        os.makedirs(os.path.join(stage, os.path.dirname(p)), exist_ok=True)
        open(os.path.join(stage, wh), "w").close()
        names.append(wh)
    share_dirs = [p for p in share if os.path.isdir("/" + p) and p.count("/") == 3]
    if share_dirs:
        opq = os.path.join(share_dirs[len(share_dirs) // 2], ".wh..wh..opq")
        os.makedirs(os.path.join(stage, os.path.dirname(opq)), exist_ok=True)
        open(os.path.join(stage, opq), "w").close()
        names.append(opq)
    # Parent directories first, as tar writers emit them.
    dirs = set()
    for n in names:
        d = os.path.dirname(n)
        while d:
            dirs.add(d)
            d = os.path.dirname(d)
    layers.append(("RUN update", stage, sorted(dirs) + sorted(names)))

    made = []
    for created_by, chdir, paths in layers:
        made.append(dict(write_layer(blobs, chdir, paths), created_by=created_by))
    shutil.rmtree(stage)

    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in made]},
              "history": [{"created_by": l["created_by"]} for l in made]}
    cdigest, csize = put_json(blobs, config)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
                           "size": csize},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l["digest"],
                            "size": l["size"]} for l in made]}
    mdigest, msize = put_json(blobs, manifest)
    with open(os.path.join(tmp_out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(tmp_out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
             "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, f)
    with open(os.path.join(tmp_out, "bench-layers.json"), "w") as f:
        json.dump(made, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp_out, out)


if __name__ == "__main__":
    main()
