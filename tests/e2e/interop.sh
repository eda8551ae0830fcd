#!/usr/bin/env bash
# Interoperability: a multi-layer image with whiteouts, squashed by slimtrace into oci:,
# oci-archive: and docker-archive: form, must be read by umoci, skopeo and a Docker engine, and each
# must see exactly the files of the input's flattened view.
#
# Usage: bash tests/e2e/interop.sh PATH-TO-SLIMTRACE   (exit 77: skipped, with the reason printed)
set -euo pipefail

SLIMTRACE=${1:?usage: interop.sh PATH-TO-SLIMTRACE}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib/common.bash
source "$HERE/lib/common.bash"
source "$HERE/lib/dockerd.bash"

require_root
require_tools umoci skopeo jq tar setcap getcap dockerd
[[ -x /bin/busybox ]] || skip "/bin/busybox is missing (Debian package busybox-static)"
[[ -x $SLIMTRACE ]] || fail "slimtrace binary '$SLIMTRACE' not found"
SLIMTRACE=$(realpath "$SLIMTRACE")

T=$(mktemp -d /tmp/slimtrace-interop.XXXXXX)
DOCKERD_ROOT=$T/docker
SOCK=
CID=
# A name of our own: a running daemon of the user's must not lose an image of theirs to us.
DNAME=slimtrace-interop-${T##*.}
DNAME=${DNAME,,}
LOADED=

cleanup() {
  local rc=$?
  [[ -n $CID ]] && "$DOCKER" -H "$SOCK" rm -f "$CID" >/dev/null 2>&1
  [[ -n $LOADED ]] && "$DOCKER" -H "$SOCK" rmi -f "$DNAME:latest" >/dev/null 2>&1
  dockerd_stop
  rm -rf "$T" 2>/dev/null || { sleep 1; rm -rf "$T" || true; }
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SECONDS=0
cd "$T"

step "building a 3-layer input image with umoci"
build_fixture "$T/IN" "$T/work" >/dev/null
[[ $(jq '.layers | length' "$T/IN/blobs/sha256/$(oci_manifest_digest "$T/IN" latest | cut -d: -f2)") -eq 3 ]] ||
  fail "fixture should have 3 layers"

step "the input's flattened view (slimtrace unpack), cross-checked against umoci unpack"
"$SLIMTRACE" -q unpack oci:"$T/IN":latest "$T/in-rootfs"
listing "$T/in-rootfs" >"$T/expected.txt"
getcap -r "$T/in-rootfs" | sed "s|^$T/in-rootfs/||" | LC_ALL=C sort >"$T/expected-caps.txt"
umoci unpack --image "$T/IN:latest" "$T/in-umoci" >/dev/null
listing "$T/in-umoci/rootfs" >"$T/in-umoci.txt"
same_or_fail "slimtrace unpack and umoci unpack disagree on the input" "$T/expected.txt" "$T/in-umoci.txt"
grep -q '^etc/conf.d/new.conf ' "$T/expected.txt" || fail "opaque dir: new.conf missing"
! grep -q '^etc/conf.d/a.conf ' "$T/expected.txt" || fail "opaque dir: a.conf should be hidden"
! grep -q '^data/deleted.txt ' "$T/expected.txt" || fail "whiteout: data/deleted.txt should be gone"
grep -q '^usr/bin/pinger cap_net_raw=ep' "$T/expected-caps.txt" || fail "file capability missing in input view"

step "slimtrace squash to oci:, oci-archive: and docker-archive:"
DIGEST=$("$SLIMTRACE" -q squash oci:"$T/IN":latest -o oci:"$T/OUT":slim)
[[ $DIGEST =~ ^sha256:[0-9a-f]{64}$ ]] || fail "squash printed '$DIGEST', not a manifest digest"
[[ $(oci_manifest_digest "$T/OUT" slim) == "$DIGEST" ]] || fail "index.json does not name $DIGEST as 'slim'"
"$SLIMTRACE" -q squash oci:"$T/IN":latest -o oci-archive:"$T/OUT.tar":slim >/dev/null
"$SLIMTRACE" -q squash oci:"$T/IN":latest -o docker-archive:"$T/OUT-docker.tar":"$DNAME":latest >/dev/null

step "slimtrace validate on each output"
"$SLIMTRACE" -q validate oci:"$T/OUT":slim
"$SLIMTRACE" -q validate oci-archive:"$T/OUT.tar":slim
"$SLIMTRACE" -q validate docker-archive:"$T/OUT-docker.tar":"$DNAME":latest

step "determinism: squashing again gives the same manifest digest and the same bytes"
DIGEST2=$("$SLIMTRACE" -q squash oci:"$T/IN":latest -o oci:"$T/OUT2":slim)
[[ $DIGEST2 == "$DIGEST" ]] || fail "second squash gave $DIGEST2, first $DIGEST"
diff -r "$T/OUT/blobs" "$T/OUT2/blobs" >/dev/null || fail "blobs of two squashes differ"
"$SLIMTRACE" -q squash oci:"$T/IN":latest -o oci-archive:"$T/OUT2.tar":slim >/dev/null
cmp -s "$T/OUT.tar" "$T/OUT2.tar" || fail "two oci-archive outputs differ"

step "slimtrace reads its own outputs back to the same view"
for ref in oci:"$T/OUT":slim oci-archive:"$T/OUT.tar":slim docker-archive:"$T/OUT-docker.tar":"$DNAME":latest; do
  d=$T/back-$RANDOM
  "$SLIMTRACE" -q unpack "$ref" "$d"
  listing "$d" >"$d.txt"
  same_or_fail "slimtrace unpack of $ref differs from the input's view" "$T/expected.txt" "$d.txt"
done

step "umoci unpack of the output"
umoci unpack --image "$T/OUT:slim" "$T/out-umoci" >/dev/null
listing "$T/out-umoci/rootfs" >"$T/out-umoci.txt"
same_or_fail "umoci sees other files in the output than the input's view" "$T/expected.txt" "$T/out-umoci.txt"
getcap -r "$T/out-umoci/rootfs" | sed "s|^$T/out-umoci/rootfs/||" | LC_ALL=C sort >"$T/out-caps.txt"
same_or_fail "file capabilities differ after squash (umoci)" "$T/expected-caps.txt" "$T/out-caps.txt"

step "skopeo inspect and skopeo copy"
skopeo inspect oci:"$T/OUT":slim >"$T/inspect.json"
[[ $(jq '.Layers | length' "$T/inspect.json") -eq 1 ]] || fail "skopeo sees $(jq '.Layers | length' "$T/inspect.json") layers, want 1"
[[ $(jq -r .Digest "$T/inspect.json") == "$DIGEST" ]] ||
  fail "skopeo digest $(jq -r .Digest "$T/inspect.json") != squash's $DIGEST"
[[ $(jq -r '.Env | index("FIXTURE=1") != null' "$T/inspect.json") == true ]] || fail "Env not carried over"
skopeo inspect oci-archive:"$T/OUT.tar":slim >/dev/null
skopeo inspect docker-archive:"$T/OUT-docker.tar" >/dev/null
skopeo copy -q oci:"$T/OUT":slim oci-archive:"$T/skopeo.tar":slim
skopeo copy -q oci:"$T/OUT":slim dir:"$T/skopeo-dir"
skopeo copy -q docker-archive:"$T/OUT-docker.tar" oci:"$T/from-docker":x
umoci unpack --image "$T/from-docker:x" "$T/from-docker-umoci" >/dev/null
listing "$T/from-docker-umoci/rootfs" >"$T/from-docker.txt"
same_or_fail "docker-archive output (via skopeo copy + umoci) differs from the input's view" \
  "$T/expected.txt" "$T/from-docker.txt"

step "a Docker engine loads the docker-archive output"
dockerd_start
SOCK=$DOCKER_SOCK
LOADED=1
"$DOCKER" -H "$SOCK" load -i "$T/OUT-docker.tar" | tee "$T/load.txt"
grep -q "$DNAME:latest" "$T/load.txt" || fail "docker load did not report $DNAME:latest"
CID=$("$DOCKER" -H "$SOCK" create --network none "$DNAME:latest" /bin/sh)
"$DOCKER" -H "$SOCK" export "$CID" >"$T/export.tar"
"$DOCKER" -H "$SOCK" rm "$CID" >/dev/null
CID=
"$DOCKER" -H "$SOCK" rmi "$DNAME:latest" >/dev/null
LOADED=

# Docker adds its own mount points and files to every container; they are not the image's.
docker_added='^([.]dockerenv|dev|dev/.*|proc|sys|etc/hosts|etc/hostname|etc/resolv[.]conf|etc/mtab)$'
tar -tf "$T/export.tar" | sed -e 's|^\./||' -e 's|/$||' | grep -v '^$' | grep -Ev "$docker_added" |
  LC_ALL=C sort >"$T/docker-names.txt"
awk '{ print $1 }' "$T/expected.txt" | grep -Ev "$docker_added" | LC_ALL=C sort >"$T/expected-names.txt"
same_or_fail "the Docker engine sees other files than the input's view" "$T/expected-names.txt" \
  "$T/docker-names.txt"
# Beyond names: modes, owners, sizes, hardlinks and symlink targets as exported by Docker.
mkdir "$T/docker-rootfs"
tar -C "$T/docker-rootfs" --numeric-owner --same-owner --xattrs --xattrs-include='*' -xpf "$T/export.tar"
listing "$T/docker-rootfs" | awk -v re="$docker_added" '$1 !~ re' >"$T/docker.txt"
same_or_fail "the Docker engine's files differ in metadata from the input's view" "$T/expected.txt" \
  "$T/docker.txt"

echo "PASS: interop (${SECONDS}s)"
