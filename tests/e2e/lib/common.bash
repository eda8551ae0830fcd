# Shared by the e2e scripts (sourced; kept out of the *.sh glob so ctest does not run it).
# Every helper fails loudly: the scripts run with `set -euo pipefail`.

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

require_root() { [[ $(id -u) -eq 0 ]] || skip "needs root (owners, setuid bits and dockerd)"; }

require_tools() {
  local t
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || skip "'$t' is not installed"; done
}

# A listing that two unpackers must agree on: path, type, mode, owner, and for non-directories
# size, link count and mtime (a directory's size and link count depend on the filesystem, and its
# mtime on the order an unpacker writes), symlink target.
listing() {
  (cd "$1" && find . -mindepth 1 -printf '%P %y %m %U %G %s %n %TY%Tm%Td%TH%TM%TS %l\n') |
    awk '{ $8 = substr($8, 1, 14); if ($2 == "d") { $6 = "-"; $7 = "-"; $8 = "-" } print }' | LC_ALL=C sort
}

# Compares two files; on a difference prints a unified diff and fails with `what`.
same_or_fail() {
  local what=$1 a=$2 b=$3
  if ! diff -u "$a" "$b" >"$a.diff"; then
    head -n 60 "$a.diff" >&2
    fail "$what"
  fi
}

# Builds the test image at OCI layout $1, tag latest, with umoci:
#   layer 1: busybox with a hardlink and a symlink, a setuid and a setgid file, a sticky /tmp,
#            a home dir owned by 1000:1000, files to be deleted later, a dangling symlink;
#   layer 2: deletes a file and a whole directory (plain whiteouts), adds and changes files;
#   layer 3: an opaque directory (.wh..wh..opq) that hides what layer 1 put there.
build_fixture() {
  local layout=$1 work=$2
  local b="$work/bundle" r="$work/bundle/rootfs"
  umoci init --layout "$layout"
  umoci new --image "$layout:latest"
  umoci unpack --image "$layout:latest" "$b" >/dev/null

  mkdir -p "$r"/{bin,etc/conf.d/sub,usr/bin,usr/share/doc,tmp,home/app,var/cache/junk,data,app}
  cp /bin/busybox "$r/bin/busybox"
  chmod 0755 "$r/bin/busybox"
  ln "$r/bin/busybox" "$r/bin/sh"
  ln -s busybox "$r/bin/ls"
  ln -s /nonexistent/target "$r/data/dangling"
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\napp:x:1000:\n' >"$r/etc/group"
  printf 'ID=fixture\nVERSION_ID=1\n' >"$r/etc/os-release"
  echo a >"$r/etc/conf.d/a.conf"
  echo b >"$r/etc/conf.d/b.conf"
  echo c >"$r/etc/conf.d/sub/c.conf"
  printf '#!/bin/sh\necho helper\n' >"$r/usr/bin/su-helper"
  chmod 4755 "$r/usr/bin/su-helper"
  printf '#!/bin/sh\necho group\n' >"$r/usr/bin/sg-helper"
  chmod 2755 "$r/usr/bin/sg-helper"
  printf '#!/bin/sh\necho ping\n' >"$r/usr/bin/pinger"
  chmod 0755 "$r/usr/bin/pinger"
  setcap cap_net_raw+ep "$r/usr/bin/pinger"
  : >"$r/usr/share/doc/empty.txt"
  chmod 1777 "$r/tmp"
  echo 'private notes' >"$r/home/app/notes.txt"
  chmod 0640 "$r/home/app/notes.txt"
  chmod 0750 "$r/home/app"
  chown -R 1000:1000 "$r/home/app"
  head -c 200000 /bin/busybox >"$r/var/cache/junk/big.bin"
  echo gone >"$r/var/cache/junk/small.txt"
  echo 'will be deleted' >"$r/data/deleted.txt"
  echo kept >"$r/data/kept.txt"
  # Old timestamps, so that a writer stamping "now" (or dropping mtimes) shows in the listings.
  find "$r" -mindepth 1 -exec touch -h -d '2020-01-02 03:04:05 UTC' {} +
  umoci repack --refresh-bundle --history.created_by "layer 1: busybox and files" --image "$layout:latest" "$b" >/dev/null

  rm -rf "$r/var/cache/junk"
  rm -f "$r/data/deleted.txt"
  printf '#!/bin/sh\nexec /bin/sh "$@"\n' >"$r/app/run.sh"
  chmod 0755 "$r/app/run.sh"
  printf 'ID=fixture\nVERSION_ID=2\n' >"$r/etc/os-release"
  umoci repack --history.created_by "layer 2: deletions" --image "$layout:latest" "$b" >/dev/null

  # umoci writes plain whiteouts only; an opaque directory needs a hand-made layer.
  local s="$work/opaque"
  mkdir -p "$s/etc/conf.d"
  : >"$s/etc/conf.d/.wh..wh..opq"
  echo new >"$s/etc/conf.d/new.conf"
  tar -C "$s" --numeric-owner --owner=0 --group=0 --sort=name -cf "$work/opaque.tar" etc
  umoci raw add-layer --history.created_by "layer 3: opaque /etc/conf.d" --image "$layout:latest" \
    "$work/opaque.tar"

  umoci config --image "$layout:latest" --config.cmd /bin/sh --config.env FIXTURE=1 \
    --config.workingdir /app --config.label org.example.fixture=yes >/dev/null
  rm -rf "$b" "$s" "$work/opaque.tar"
}

# The manifest digest that index.json of OCI layout $1 gives to ref.name $2.
oci_manifest_digest() {
  jq -r --arg t "$2" \
    '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest][0]' \
    "$1/index.json"
}

# A busybox image at LAYOUT:latest, made with umoci from busybox-static: /bin/busybox with APPLETS
# (a space-separated list) as symlinks, and root in /etc/passwd and /etc/group. POPULATE, when
# given, is a function called with the rootfs path to add more before the layer is packed. The
# caller sets the config (umoci config).
busybox_image() {
  local layout=$1 applets=$2 populate=${3:-}
  local b="$layout.bundle"
  umoci init --layout "$layout"
  umoci new --image "$layout:latest"
  umoci unpack --image "$layout:latest" "$b" >/dev/null
  local r="$b/rootfs" a
  mkdir -p "$r/bin" "$r/etc" "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for a in $applets; do ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\n' >"$r/etc/group"
  if [[ -n $populate ]]; then "$populate" "$r"; fi
  umoci repack --image "$layout:latest" "$b" >/dev/null
  rm -rf "$b"
}
