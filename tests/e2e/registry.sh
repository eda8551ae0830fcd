#!/usr/bin/env bash
# docker:// in and out: slimtrace pushes to and pulls from Debian's docker-registry on 127.0.0.1,
# anonymous, with htpasswd basic auth and with bearer tokens from a token service of the test's;
# skopeo checks what was pushed; a two-platform index (pushed by skopeo) is pulled by platform; the
# errors users meet (unauthorized, unreachable, manifest unknown, platform not in the index, digest
# mismatch) are one line naming the cause.
#
# Usage: bash tests/e2e/registry.sh PATH-TO-SLIMTRACE   (exit 77: skipped, with the reason printed)
set -euo pipefail

SLIMTRACE=${1:?usage: registry.sh PATH-TO-SLIMTRACE}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib/common.bash
source "$HERE/lib/common.bash"
# shellcheck source=tests/e2e/lib/registry.bash
source "$HERE/lib/registry.bash"

require_root
require_tools docker-registry skopeo umoci jq openssl python3 perl sha256sum
[[ -x /bin/busybox ]] || skip "/bin/busybox is missing (Debian package busybox-static)"
[[ -x $SLIMTRACE ]] || fail "slimtrace binary '$SLIMTRACE' not found"
SLIMTRACE=$(realpath "$SLIMTRACE")

T=$(mktemp -d /tmp/slimtrace-registry.XXXXXX)
REGISTRY_ROOT=$T/reg
cleanup() {
  local rc=$?
  registry_stop_all
  rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# No logins of the user's may leak into the anonymous cases (or answer for the others).
mkdir -p "$T/no-logins"
export DOCKER_CONFIG=$T/no-logins
unset REGISTRY_AUTH_FILE

# Runs slimtrace expecting failure; prints its stderr; fails if it succeeds or the message lacks $1.
expect_error() {
  local want=$1 out
  shift
  if out=$("$SLIMTRACE" -q "$@" 2>&1 >/dev/null); then fail "slimtrace $* succeeded; expected '$want'"; fi
  echo "   -> $out"
  [[ $(grep -c . <<<"$out") -eq 1 ]] || fail "expected one error line, got: $out"
  grep -qF -- "$want" <<<"$out" || fail "error does not say '$want': $out"
}

# skopeo's view of a pushed image's manifest digest.
skopeo_digest() {
  skopeo inspect --tls-verify=false "$@" | jq -r .Digest
}

# The files of an image as slimtrace unpacks them, for comparing a pulled image with its source.
view_of() {
  local d=$T/view-$RANDOM
  "$SLIMTRACE" -q unpack "$1" "$d"
  listing "$d"
  rm -rf "$d"
}

SRC_FILE=$(mktemp "$T/src-XXXX.txt")
extra_files() {
  head -c 300000 /dev/urandom >"$1/random.bin"  # incompressible: the layer spans several chunks
  echo hello >"$1/hello.txt"
}

step "fixture: a busybox image (umoci, busybox-static)"
busybox_image "$T/SRC" "sh ls cat echo" extra_files
umoci config --image "$T/SRC:latest" --config.cmd /bin/sh >/dev/null
view_of oci:"$T/SRC":latest >"$SRC_FILE"

step "anonymous registry: squash to docker://, skopeo sees the same digest"
registry_start anon anon
ANON=$REG_HOST ANON_STORAGE=$REG_STORAGE ANON_LOG=$REG_LOG
DIGEST=$("$SLIMTRACE" -q squash oci:"$T/SRC":latest -o docker://"$ANON"/app:1 --tls-verify=false)
[[ $DIGEST =~ ^sha256:[0-9a-f]{64}$ ]] || fail "squash printed '$DIGEST', not a manifest digest"
[[ $(skopeo_digest docker://"$ANON"/app:1) == "$DIGEST" ]] || fail "skopeo sees another digest than $DIGEST"

step "pushing the same image again uploads nothing (existence checks)"
# Completed uploads are PUTs (the check before a push starts an upload and cancels it).
before=$(grep -c '"PUT /v2/app/blobs/uploads/' "$ANON_LOG" || true)
DIGEST_AGAIN=$("$SLIMTRACE" -q squash oci:"$T/SRC":latest -o docker://"$ANON"/app:1 --tls-verify=false)
[[ $DIGEST_AGAIN == "$DIGEST" ]] || fail "second push: $DIGEST_AGAIN, first $DIGEST"
after=$(grep -c '"PUT /v2/app/blobs/uploads/' "$ANON_LOG" || true)
[[ $before -ge 2 && $after -eq $before ]] || fail "uploads before/after the second push: $before/$after"

step "xray and squash read docker:// back"
"$SLIMTRACE" -q xray docker://"$ANON"/app:1 --tls-verify=false >"$T/xray.txt"
[[ -s $T/xray.txt ]] || fail "xray of docker://$ANON/app:1 printed nothing"
"$SLIMTRACE" -q squash docker://"$ANON"/app:1 -o oci:"$T/BACK":back --tls-verify=false >/dev/null
same_or_fail "the pulled image's files differ from the source's" "$SRC_FILE" <(view_of oci:"$T/BACK":back)
"$SLIMTRACE" -q squash docker://"$ANON"/app@"$DIGEST" -o oci:"$T/BYDIGEST":x --tls-verify=false >/dev/null

step "chunked upload (--upload-chunk-size 65536)"
D2=$("$SLIMTRACE" -q squash oci:"$T/SRC":latest -o docker://"$ANON"/chunked/app:1 --tls-verify=false \
  --upload-chunk-size 65536)
[[ $(skopeo_digest docker://"$ANON"/chunked/app:1) == "$D2" ]] || fail "skopeo sees another digest than $D2"
patches=$(grep -c '"PATCH /v2/chunked/app/blobs/uploads/' "$ANON_LOG" || true)
[[ $patches -ge 3 ]] || fail "expected several PATCH requests for the chunked upload, the registry logged $patches"
"$SLIMTRACE" -q squash docker://"$ANON"/chunked/app:1 -o oci:"$T/BACK2":back --tls-verify=false >/dev/null
same_or_fail "the chunk-uploaded image's files differ from the source's" "$SRC_FILE" <(view_of oci:"$T/BACK2":back)

step "a two-platform index (pushed by skopeo copy --all): linux/amd64 is pulled, linux/arm64 is not there"
# The layout: SRC's manifest for linux/amd64 and a copy whose config says linux/s390x, under one
# index tagged "multi".
M=$T/MULTI
cp -a "$T/SRC" "$M"
add_blob() {  # stdin -> blobs/sha256/HEX; prints "DIGEST SIZE"
  local f=$M/blob.tmp hex
  cat >"$f"
  hex=$(sha256sum "$f" | cut -d' ' -f1)
  mv "$f" "$M/blobs/sha256/$hex"
  echo "sha256:$hex $(stat -c %s "$M/blobs/sha256/$hex")"
}
m1=$(oci_manifest_digest "$M" latest)
m1_size=$(stat -c %s "$M/blobs/sha256/${m1#sha256:}")
c1=$(jq -r .config.digest "$M/blobs/sha256/${m1#sha256:}")
read -r c2 c2_size < <(jq -c '.architecture = "s390x"' "$M/blobs/sha256/${c1#sha256:}" | tr -d '\n' | add_blob)
read -r m2 m2_size < <(jq -c --arg d "$c2" --argjson s "$c2_size" '.config.digest = $d | .config.size = $s' \
  "$M/blobs/sha256/${m1#sha256:}" | tr -d '\n' | add_blob)
read -r ix ix_size < <(jq -nc --arg m1 "$m1" --argjson s1 "$m1_size" --arg m2 "$m2" --argjson s2 "$m2_size" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [
    {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m1, size: $s1,
     platform: {os: "linux", architecture: "amd64"}},
    {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m2, size: $s2,
     platform: {os: "linux", architecture: "s390x"}}]}' | tr -d '\n' | add_blob)
jq -n --arg d "$ix" --argjson s "$ix_size" '{schemaVersion: 2, manifests: [
  {mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
   annotations: {"org.opencontainers.image.ref.name": "multi"}}]}' >"$M/index.json"
skopeo copy -q --all --dest-tls-verify=false oci:"$M":multi docker://"$ANON"/multi:1
[[ $(skopeo inspect --tls-verify=false --raw docker://"$ANON"/multi:1 | jq -r '.manifests | length') -eq 2 ]] ||
  fail "the registry does not hold a two-entry index"
"$SLIMTRACE" -q squash docker://"$ANON"/multi:1 -o oci:"$T/AMD":x --tls-verify=false --platform linux/amd64 >/dev/null
same_or_fail "the linux/amd64 image pulled from the index differs" "$SRC_FILE" <(view_of oci:"$T/AMD":x)
"$SLIMTRACE" -q squash docker://"$ANON"/multi:1 -o oci:"$T/S390":x --tls-verify=false --platform linux/s390x >/dev/null
[[ $(skopeo inspect --config oci:"$T/S390":x | jq -r .architecture) == s390x ]] ||
  fail "--platform linux/s390x did not pick the s390x manifest"
expect_error "no image for platform linux/arm64 in the index (it has linux/amd64, linux/s390x)" \
  xray docker://"$ANON"/multi:1 --tls-verify=false --platform linux/arm64

step "squash --tag names what is pushed"
"$SLIMTRACE" -q squash oci:"$T/SRC":latest -o docker://"$ANON"/app:1 --tag v2 --tls-verify=false >/dev/null
skopeo inspect --tls-verify=false docker://"$ANON"/app:v2 >/dev/null || fail "--tag v2 was not pushed"

step "errors: manifest unknown, unreachable"
expect_error "docker://$ANON/app:nope: manifest unknown" xray docker://"$ANON"/app:nope --tls-verify=false
CLOSED=$(registry_free_port)
expect_error "registry 127.0.0.1:$CLOSED unreachable: Connection refused" \
  xray docker://127.0.0.1:"$CLOSED"/app:1 --tls-verify=false
set +e
"$SLIMTRACE" -q validate docker://127.0.0.1:"$CLOSED"/app:1 --tls-verify=false 2>/dev/null
rc=$?
set -e
[[ $rc -eq 3 ]] || fail "validate of an unreachable image: exit $rc, expected 3 (bad input)"

step "htpasswd basic auth: --creds, and an auth file via DOCKER_CONFIG"
registry_start basic basic alice 's3cret pass'
BASIC=$REG_HOST
# Refused before any work: build would otherwise trace and verify, then fail to push.
if out=$(cd "$T" && "$SLIMTRACE" -q build oci:"$T/SRC":latest -o docker://"$BASIC"/app:never --tls-verify=false \
  --report "$T/never.json" 2>&1); then fail "build to a registry it may not push to succeeded"; fi
grep -q "write docker://$BASIC/app:never: unauthorized: authentication required" <<<"$out" ||
  fail "build to a refusing registry: $out"
[[ ! -e $T/never.json ]] || fail "build traced although the push could never succeed"

D3=$("$SLIMTRACE" -q squash oci:"$T/SRC":latest -o docker://"$BASIC"/app:1 --tls-verify=false \
  --creds 'alice:s3cret pass')
[[ $(skopeo_digest --creds 'alice:s3cret pass' docker://"$BASIC"/app:1) == "$D3" ]] || fail "skopeo sees another digest than $D3"
"$SLIMTRACE" -q xray docker://"$BASIC"/app:1 --tls-verify=false --creds 'alice:s3cret pass' >/dev/null
mkdir -p "$T/dcfg"
jq -n --arg k "$BASIC" --arg a "$(printf 'alice:s3cret pass' | base64 -w0)" '{auths: {($k): {auth: $a}}}' \
  >"$T/dcfg/config.json"
DOCKER_CONFIG=$T/dcfg "$SLIMTRACE" -q squash docker://"$BASIC"/app:1 -o oci:"$T/BASICBACK":x --tls-verify=false >/dev/null
same_or_fail "the image pulled with basic auth differs" "$SRC_FILE" <(view_of oci:"$T/BASICBACK":x)
expect_error "docker://$BASIC/app:1: unauthorized: authentication required" \
  xray docker://"$BASIC"/app:1 --tls-verify=false --creds alice:wrong
expect_error "docker://$BASIC/app:1: unauthorized: authentication required" \
  xray docker://"$BASIC"/app:1 --tls-verify=false

step "bearer tokens: push with --creds, pull with --auth-file (an https://HOST key), refusals"
registry_start token token bob tok3n
TOKEN=$REG_HOST
D4=$("$SLIMTRACE" -q squash oci:"$T/SRC":latest -o docker://"$TOKEN"/team/app:1 --tls-verify=false --creds bob:tok3n)
[[ $(skopeo_digest --creds bob:tok3n docker://"$TOKEN"/team/app:1) == "$D4" ]] || fail "skopeo sees another digest than $D4"
jq -n --arg k "https://$TOKEN" --arg a "$(printf 'bob:tok3n' | base64 -w0)" '{auths: {($k): {auth: $a}}}' \
  >"$T/auth.json"
"$SLIMTRACE" -q squash docker://"$TOKEN"/team/app:1 -o oci:"$T/TOKENBACK":x --tls-verify=false \
  --auth-file "$T/auth.json" >/dev/null
same_or_fail "the image pulled with a bearer token differs" "$SRC_FILE" <(view_of oci:"$T/TOKENBACK":x)
REGISTRY_AUTH_FILE=$T/auth.json "$SLIMTRACE" -q xray docker://"$TOKEN"/team/app:1 --tls-verify=false >/dev/null
expect_error "docker://$TOKEN/team/app:1: unauthorized" \
  xray docker://"$TOKEN"/team/app:1 --tls-verify=false --creds bob:wrong
expect_error "docker://$TOKEN/team/app:1: unauthorized: authentication required" \
  xray docker://"$TOKEN"/team/app:1 --tls-verify=false

step "retries: through a proxy that fails the first request of each kind with 503 or 429"
registry_flaky_proxy "${ANON##*:}"
D5=$("$SLIMTRACE" -q squash oci:"$T/SRC":latest -o docker://"$FLAKY_HOST"/flaky/app:1 --tls-verify=false \
  --upload-chunk-size 65536)
[[ $(skopeo_digest docker://"$ANON"/flaky/app:1) == "$D5" ]] || fail "skopeo sees another digest than $D5"
"$SLIMTRACE" -q squash docker://"$FLAKY_HOST"/flaky/app:1 -o oci:"$T/FLAKYBACK":x --tls-verify=false >/dev/null
same_or_fail "the image pulled through the flaky proxy differs" "$SRC_FILE" <(view_of oci:"$T/FLAKYBACK":x)
for want in "503 for PATCH" "503 for PUT" "503 for POST" "429 for HEAD" "503 for GET /v2/flaky/app/blobs/"; do
  grep -q "injected $want" "$FLAKY_LOG" || fail "the proxy never injected '$want': $(cat "$FLAKY_LOG")"
done

step "digest mismatch: a layer blob corrupted in the registry's storage"
layer=$(skopeo inspect --tls-verify=false docker://"$ANON"/app:1 | jq -r '.Layers[0]')
data=$(registry_blob_data "$ANON_STORAGE" "$layer")
[[ -f $data ]] || fail "no blob data at $data"
python3 - "$data" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1000)
    b = f.read(1)
    f.seek(1000)
    f.write(bytes([b[0] ^ 0xFF]))
EOF
expect_error "blob $layer: digest mismatch (got sha256:" xray docker://"$ANON"/app:1 --tls-verify=false

step "registry -> build -> registry: a web app minified from and to the registry, verified"
if ! command -v runc >/dev/null 2>&1 || [[ ! -d /sys/fs/bpf ]]; then
  echo "   (not run: needs runc and BPF)"
else
  # shellcheck source=tests/e2e/lib/probe_fixtures.bash
  source "$HERE/lib/probe_fixtures.bash"
  probe_build_web "$T/WEB"
  "$SLIMTRACE" -q squash oci:"$T/WEB":web -o docker://"$ANON"/web:1 --tls-verify=false >/dev/null
  (cd "$T" && "$SLIMTRACE" -q build docker://"$ANON"/web:1 -o docker://"$ANON"/web:1-slim --tls-verify=false \
    --stop-grace 1 --report "$T/web.report.json" --seccomp-out "$T/web.seccomp.json") ||
    fail "build from and to the registry failed"
  jq -e '.outcome == "ok" and .verification.passed and .verification.under_seccomp_profile' \
    "$T/web.report.json" >/dev/null || fail "the minified image was not verified"
  WD=$(jq -r .output.manifest_digest "$T/web.report.json")
  [[ $(skopeo_digest docker://"$ANON"/web:1-slim) == "$WD" ]] || fail "skopeo sees another digest than $WD"
  [[ $(jq -r .input.manifest_digest "$T/web.report.json") == $(skopeo_digest docker://"$ANON"/web:1) ]] ||
    fail "the report's input digest is not the registry's"
  # What was pushed is the verified image: it pulls back and keeps the page the probes fetched.
  "$SLIMTRACE" -q unpack docker://"$ANON"/web:1-slim "$T/web-slim" --tls-verify=false
  [[ -f $T/web-slim/www/about.html && ! -e $T/web-slim/bin/wc ]] || fail "the pushed image is not the minified one"
fi

echo "PASS: registry (${SECONDS}s)"
