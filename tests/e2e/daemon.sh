#!/usr/bin/env bash
# docker-daemon: images read from and loaded into a real Docker engine (Debian's dockerd with its
# own data root and socket, unless one is already running): xray and unpack of an image put there
# with `docker load`; squash from the engine back into it, run by the engine and cross-checked
# with skopeo and docker inspect; `build` of a web image leaving NAME.slim:TAG in the engine that
# serves the same pages; and the one-line errors for a missing engine and a missing image.
#
# Usage: bash tests/e2e/daemon.sh PATH-TO-SLIMTRACE   (exit 77: skipped, with the reason printed)
set -euo pipefail

SLIMTRACE=${1:?usage: daemon.sh PATH-TO-SLIMTRACE}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib/common.bash
source "$HERE/lib/common.bash"
source "$HERE/lib/dockerd.bash"
source "$HERE/lib/probe_fixtures.bash"

require_root
command -v dockerd >/dev/null 2>&1 || skip "dockerd is not installed (Debian package docker.io)"
require_tools umoci skopeo jq tar
[[ -x /bin/busybox ]] || skip "/bin/busybox is missing (Debian package busybox-static)"
[[ -x $SLIMTRACE ]] || fail "slimtrace binary '$SLIMTRACE' not found"
SLIMTRACE=$(realpath "$SLIMTRACE")

T=$(mktemp -d /tmp/slimtrace-daemon.XXXXXX)
DOCKERD_ROOT=$T/docker
# Names of our own: a running engine of the user's must not lose an image of theirs to us.
SUFFIX=${T##*.}
SUFFIX=${SUFFIX,,}
APP=slimtrace-daemon-app-$SUFFIX
WEB=slimtrace-daemon-web-$SUFFIX
CONTAINERS=()
ST_HOST=

cleanup() {
  local rc=$?
  if [[ -n $DOCKER_SOCK ]]; then
    local c
    for c in "${CONTAINERS[@]}"; do "$DOCKER" -H "$DOCKER_SOCK" rm -f "$c" >/dev/null 2>&1 || true; done
    "$DOCKER" -H "$DOCKER_SOCK" rmi -f "$APP:1" "$APP:squashed" "$WEB:1" "$WEB.slim:1" >/dev/null 2>&1 || true
  fi
  dockerd_stop
  rm -rf "$T" 2>/dev/null || { sleep 1; rm -rf "$T" || true; }
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SECONDS=0
cd "$T"

# st ARGS...: runs slimtrace against the test's engine (or ST_HOST), stderr in $T/err, stdout in $T/out, exit
# code in $rc.
st() {
  set +e
  DOCKER_HOST=${ST_HOST:-$DOCKER_SOCK} "$SLIMTRACE" "$@" >"$T/out" 2>"$T/err"
  rc=$?
  set -e
}
expect_ok() { [[ $rc -eq 0 ]] || { cat "$T/err" >&2; fail "$1: exit code $rc"; }; }
# expect_error WHAT PATTERN: a non-zero exit and exactly one line on stderr matching PATTERN.
expect_error() {
  [[ $rc -ne 0 ]] || fail "$1: exit code 0, expected a failure"
  [[ $(wc -l <"$T/err") -eq 1 ]] || { cat "$T/err" >&2; fail "$1: the error is not one line"; }
  grep -Eq "$2" "$T/err" || fail "$1: '$(cat "$T/err")' does not match '$2'"
}
dk() { "$DOCKER" -H "$DOCKER_SOCK" "$@"; }

step "building the fixture images (a 3-layer image with whiteouts, a busybox web site)"
build_fixture "$T/IN" "$T/work" >/dev/null
probe_build_web "$T/WEBL"
skopeo copy -q oci:"$T/IN":latest docker-archive:"$T/app.tar":"$APP:1"
skopeo copy -q oci:"$T/WEBL":web docker-archive:"$T/web.tar":"$WEB:1"
"$SLIMTRACE" -q unpack oci:"$T/IN":latest "$T/in-rootfs"
listing "$T/in-rootfs" >"$T/expected.txt"

step "the errors a user meets first: no engine, an unsupported endpoint"
ST_HOST=unix://$T/no-such.sock
st -q xray "docker-daemon:$APP:1"
expect_error "engine not running" \
  "docker engine not running at unix://$T/no-such.sock: connect: (No such file or directory|Connection refused)"
ST_HOST=tcp://127.0.0.1:2375
st -q xray "docker-daemon:$APP:1"
expect_error "tcp:// endpoint" "tcp://127.0.0.1:2375.*not supported.*unix"
ST_HOST=

step "starting the engine and loading the fixtures with docker load"
dockerd_start
dk load -i "$T/app.tar" >/dev/null
dk load -i "$T/web.tar" >/dev/null
dk image inspect "$APP:1" >/dev/null || fail "docker load did not tag $APP:1"

step "image not found: one line naming the reference"
st -q xray "docker-daemon:$APP:no-such-tag"
expect_error "image not found" "^slimtrace: .*docker-daemon:$APP:no-such-tag: image not found in the engine$"

step "xray and unpack read the image out of the engine"
st xray "docker-daemon:$APP:1"
expect_ok "xray docker-daemon:$APP:1"
[[ -s $T/out ]] || fail "xray printed nothing"
st -q unpack "docker-daemon:$APP:1" "$T/from-daemon"
expect_ok "unpack docker-daemon:$APP:1"
listing "$T/from-daemon" >"$T/from-daemon.txt"
same_or_fail "the image read from the engine differs from the one loaded into it" "$T/expected.txt" \
  "$T/from-daemon.txt"
# By image ID as well, the way `docker images -q` names it.
ID=$(dk image inspect -f '{{.Id}}' "$APP:1")
st -q unpack "docker-daemon:$ID" "$T/from-id"
expect_ok "unpack docker-daemon:$ID"
listing "$T/from-id" >"$T/from-id.txt"
same_or_fail "the image read by ID differs" "$T/expected.txt" "$T/from-id.txt"

step "squash from the engine into the engine"
st -q squash "docker-daemon:$APP:1" -o "docker-daemon:$APP:squashed"
expect_ok "squash to docker-daemon:$APP:squashed"
dk image inspect "$APP:squashed" >"$T/squashed.json" || fail "no $APP:squashed in the engine after squash"
[[ $(cat "$T/out") == $(jq -r '.[0].Id' "$T/squashed.json") ]] ||
  fail "squash printed '$(cat "$T/out")', not the engine's image ID"
st -q squash "docker-daemon:$APP:1" -o "docker-daemon:$APP:other" --tag retagged
expect_ok "squash with --tag"
dk image inspect "$APP:retagged" >/dev/null || fail "--tag did not name the image in the engine"
st -q squash "docker-daemon:$APP:1" -o "docker-daemon:$APP:zstd" --compression zstd
[[ $rc -eq 7 ]] || fail "zstd into the engine: exit $rc, expected 7"
[[ $(grep -c . "$T/err") -eq 1 ]] && grep -q "docker load does not read zstd layers" "$T/err" ||
  fail "zstd into the engine: $(cat "$T/err")"
[[ $(jq '.[0].RootFS.Layers | length' "$T/squashed.json") -eq 1 ]] || fail "the squashed image has not one layer"
# The same squash written to an OCI layout: the engine must hold exactly that config and layer.
st -q squash "docker-daemon:$APP:1" -o "oci:$T/SQ:squashed"
expect_ok "squash to oci:"
mdigest=$(oci_manifest_digest "$T/SQ" squashed)
config=$(jq -r .config.digest "$T/SQ/blobs/sha256/${mdigest#sha256:}")
diff_id=$(jq -r '.rootfs.diff_ids[0]' "$T/SQ/blobs/sha256/${config#sha256:}")
[[ $(jq -r '.[0].Id' "$T/squashed.json") == "$config" ]] ||
  fail "engine image ID $(jq -r '.[0].Id' "$T/squashed.json") is not the config slimtrace wrote ($config)"
[[ $(jq -r '.[0].RootFS.Layers[0]' "$T/squashed.json") == "$diff_id" ]] ||
  fail "engine layer $(jq -r '.[0].RootFS.Layers[0]' "$T/squashed.json") is not slimtrace's diff_id $diff_id"
skopeo inspect --daemon-host "$DOCKER_SOCK" "docker-daemon:$APP:squashed" >"$T/skopeo.json" ||
  fail "skopeo cannot inspect docker-daemon:$APP:squashed"
[[ $(jq -c .Layers "$T/skopeo.json") == "[\"$diff_id\"]" ]] ||
  fail "skopeo sees layers $(jq -c .Layers "$T/skopeo.json"), slimtrace wrote [$diff_id]"
[[ $(jq -r '.Env | index("FIXTURE=1") != null' "$T/skopeo.json") == true ]] || fail "Env not carried over"

step "the squashed image runs in the engine and sees the flattened files"
out=$(dk run --rm --network none "$APP:squashed" /bin/sh -c 'cat /etc/os-release; ls /etc/conf.d; pwd')
grep -q '^VERSION_ID=2$' <<<"$out" || fail "the container sees the wrong os-release: $out"
grep -q '^new.conf$' <<<"$out" || fail "the opaque directory's new file is missing: $out"
! grep -q '^a.conf$' <<<"$out" || fail "a file hidden by the opaque directory came back: $out"
grep -q '^/app$' <<<"$out" || fail "working directory not carried over: $out"

step "build docker-daemon:$WEB:1 with no -o: $WEB.slim:1 appears in the engine"
st build "docker-daemon:$WEB:1" --stop-grace 1 --report "$T/report.json"
if [[ $rc -eq 4 ]]; then skip "runtime or tracer unavailable for build: $(head -n 3 "$T/err")"; fi
expect_ok "build docker-daemon:$WEB:1"
dk image inspect "$WEB.slim:1" >"$T/slim.json" || fail "no $WEB.slim:1 in the engine after build: $(cat "$T/err")"
[[ $(jq -r .outcome "$T/report.json") == ok ]] || fail "build outcome $(jq -r .outcome "$T/report.json")"
orig_size=$(dk image inspect -f '{{.Size}}' "$WEB:1")
slim_size=$(jq '.[0].Size' "$T/slim.json")
[[ $slim_size -lt $orig_size ]] || fail "the minified image ($slim_size bytes) is not smaller than $orig_size"
# The engine holds exactly the verified image the report describes.
[[ $(jq -r '.[0].Id' "$T/slim.json") == $(jq -r .output.config_digest "$T/report.json") ]] ||
  fail "the engine's $WEB.slim:1 is not the config the report names"
skopeo inspect --daemon-host "$DOCKER_SOCK" "docker-daemon:$WEB.slim:1" >"$T/skopeo-slim.json" ||
  fail "skopeo cannot inspect docker-daemon:$WEB.slim:1"
[[ $(jq -c .Layers "$T/skopeo-slim.json") == "[\"$(jq -r .output.diff_id "$T/report.json")\"]" ]] ||
  fail "skopeo sees layers $(jq -c .Layers "$T/skopeo-slim.json"), the report names $(jq -r .output.diff_id "$T/report.json")"
[[ $(jq -r .input.config_digest "$T/report.json") == $(dk image inspect -f '{{.Id}}' "$WEB:1") ]] ||
  fail "the report's input config is not the engine's image ID of $WEB:1"

step "the original and the minified image serve the same pages in the engine"
# fetch IMAGE: starts IMAGE without network (loopback only) and prints the pages as served to a
# client inside the container; busybox is kept in the minified image since httpd is a link to it.
fetch() {
  local cid page
  cid=$(dk run -d --network none "$1")
  CONTAINERS+=("$cid")
  for _ in $(seq 1 50); do
    dk exec "$cid" /bin/busybox wget -q -O /dev/null http://127.0.0.1:8080/ 2>/dev/null && break
    sleep 0.2
  done
  for page in / /about.html /assets/app.css /deep/1.html; do
    echo "== $page"
    dk exec "$cid" /bin/busybox wget -q -O - "http://127.0.0.1:8080$page" || echo "(fetch failed)"
  done
  dk rm -f "$cid" >/dev/null
}
fetch "$WEB:1" >"$T/pages-orig.txt"
fetch "$WEB.slim:1" >"$T/pages-slim.txt"
grep -q "probe fixture" "$T/pages-orig.txt" || fail "the original image does not serve its page: $(head "$T/pages-orig.txt")"
same_or_fail "the minified image serves other pages than the original" "$T/pages-orig.txt" "$T/pages-slim.txt"

echo "PASS: daemon (${SECONDS}s)"
