#!/usr/bin/env bash
# The CI recipe of docs/ci.md, run as written: its post-build script is taken out of the document
# and run after a real `docker build` in a private Docker engine, pushing to a registry on
# 127.0.0.1. Checks what a pipeline relies on: exit 0 with the image loaded, pushed (digest as
# skopeo sees it) and the report, profile and job summary written; exit 6 and nothing pushed when
# verification fails; exit 1 when xray finds a private key in what would ship.
# Usage: ci_recipe.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"
source "$here/lib/dockerd.bash"
source "$here/lib/registry.bash"

slimtrace=$(realpath "$1")
doc="${SLIMTRACE_SOURCE_DIR:-$here/../..}/docs/ci.md"
require_root
require_tools jq skopeo docker-registry
[[ -x /bin/busybox ]] || skip "/bin/busybox (busybox-static) is missing"
command -v runc >/dev/null 2>&1 || command -v crun >/dev/null 2>&1 || skip "no OCI runtime (runc or crun)"
[[ -d /sys/fs/bpf ]] || skip "BPF is unavailable (/sys/fs/bpf missing)"

tmp=$(mktemp -d /tmp/slimtrace-e2e-ci.XXXXXX)
cleanup() {
  registry_stop_all || true
  dockerd_stop || true
  rm -rf "$tmp"
}
trap cleanup EXIT
DOCKERD_ROOT=$tmp/docker
REGISTRY_ROOT=$tmp/registry

step "the documented pieces"
# block NAME: the fenced block between <!-- NAME:begin --> and <!-- NAME:end --> of docs/ci.md.
block() {
  awk -v b="<!-- $1:begin -->" -v e="<!-- $1:end -->" '
    $0 == b { on = 1; next } $0 == e { on = 0 } on && !/^```/ { print }' "$doc"
}
repo=$tmp/repo
mkdir -p "$repo/ci" "$repo/.slimtrace" "$repo/rootfs"
block ci-step >"$repo/ci/slimtrace-post-build.sh"
[[ $(head -n 1 "$repo/ci/slimtrace-post-build.sh") == "#!/bin/sh" ]] || fail "no post-build script in $doc"
sh -n "$repo/ci/slimtrace-post-build.sh" || fail "the documented script is not valid sh"
for ci in ci-github ci-gitlab; do
  y=$(block $ci)
  [[ -n $y ]] || fail "no $ci block in $doc"
  grep -q "sh ci/slimtrace-post-build.sh" <<<"$y" || fail "the $ci recipe does not run the post-build script"
  grep -q "slimtrace-out/" <<<"$y" || fail "the $ci recipe does not keep slimtrace-out/ as artifacts"
  grep -q "docker build" <<<"$y" || fail "the $ci recipe does not build the image"
done

step "starting a private Docker engine and a registry on 127.0.0.1"
dockerd_start
registry_start ci anon
# The recipe's commands as a CI host has them: this slimtrace, and the engine's own client.
mkdir -p "$tmp/bin"
ln -s "$slimtrace" "$tmp/bin/slimtrace"
ln -s "$DOCKER" "$tmp/bin/docker"
export PATH="$tmp/bin:$PATH" DOCKER_HOST=$DOCKER_SOCK

step "an app repository: a Dockerfile FROM scratch with busybox httpd, and a probe file"
r=$repo/rootfs
mkdir -p "$r"/{bin,etc,tmp,www}
cp /bin/busybox "$r/bin/busybox"
for a in sh httpd cat ls wc; do ln -s busybox "$r/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
chmod 1777 "$r/tmp"
printf '<html><body><a href="/about.html">About</a></body></html>\n' >"$r/www/index.html"
printf '<html><body>About</body></html>\n' >"$r/www/about.html"
cat >"$repo/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
EXPOSE 8080
CMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
EOF
echo '[{"path": "/"}, {"path": "/about.html"}]' >"$repo/.slimtrace/probes.json"
(cd "$repo" && DOCKER_BUILDKIT=0 docker build -q -t app:ci . >/dev/null) || fail "docker build failed"

# ci_run VAR=VALUE...: runs the step in the repository as the CI job would; exit code in $rc.
ci_run() {
  set +e
  (cd "$repo" && env "$@" SLIMTRACE_BUILD_ARGS="--stop-grace 1 ${EXTRA_ARGS:-}" \
    sh ci/slimtrace-post-build.sh >"$tmp/out" 2>"$tmp/err")
  rc=$?
  set -e
}

step "the step on a good image: exit 0, loaded, pushed, report, profile and summary"
rm -rf "$repo/slimtrace-out"
ci_run IMAGE=app:ci PUSH_TO="$REG_HOST/app:ci-slim" GITHUB_STEP_SUMMARY="$tmp/summary.md"
[[ $rc -eq 0 ]] || { cat "$tmp/err" >&2; fail "the post-build step failed on a good image: exit $rc"; }
o=$repo/slimtrace-out
jq_ok() { jq -e "$2" "$1" >/dev/null || fail "$3: $(jq -c "$2" "$1")"; }
jq_ok "$o/slimtrace.report.json" '.outcome == "ok" and .verification.passed' "report outcome"
jq_ok "$o/slimtrace.report.json" '.output.ref == "docker-daemon:app.slim:ci"' "report output ref"
jq_ok "$o/seccomp.json" '.defaultAction == "SCMP_ACT_ERRNO" and (.syscalls | length) > 0' "seccomp profile"
[[ -s $o/xray.txt ]] || fail "no xray report of the minified image"
grep -q "slimtrace build: \`docker-daemon:app:ci\`" "$tmp/summary.md" || fail "job summary: $(head -n 3 "$tmp/summary.md")"
grep -q "verification:\*\* passed" "$tmp/summary.md" || fail "job summary says nothing of verification"
docker image inspect app.slim:ci >/dev/null || fail "app.slim:ci is not in the engine"
# As deployed: its own command under its own profile; the page fetched from the host inside the
# container's network namespace (a `docker exec` would run under the profile too, and the app
# itself never connects anywhere).
cid=$(docker run -d --network none --security-opt "seccomp=$o/seccomp.json" app.slim:ci)
pid=$(docker inspect --format '{{.State.Pid}}' "$cid")
page=
for _ in $(seq 1 50); do
  page=$(nsenter -t "$pid" -n /bin/busybox wget -q -O- http://127.0.0.1:8080/about.html 2>/dev/null) && break
  sleep 0.2
done
docker rm -f "$cid" >/dev/null
[[ $page == *About* ]] || fail "the minified image does not serve its page in the engine under its profile"
docker run --rm --entrypoint /bin/wc app.slim:ci /www/index.html >/dev/null 2>&1 &&
  fail "the unused wc applet shipped"
pushed=$(skopeo inspect --tls-verify=false "docker://$REG_HOST/app:ci-slim" | jq -r .Digest)
engine=$(docker image inspect app.slim:ci --format '{{index .RepoDigests 0}}')
[[ $engine == *"@$pushed" ]] || fail "pushed digest $pushed, the engine knows $engine"
config=$(jq -r .output.config_digest "$o/slimtrace.report.json")
[[ $(docker image inspect app.slim:ci --format '{{.Id}}') == "$config" ]] ||
  fail "the engine's image ID is not the config slimtrace wrote ($config)"

step "a minified image that fails verification: exit 6, nothing loaded or pushed"
docker tag app:ci app:broken
EXTRA_ARGS="--exclude-pattern /www/about.html" ci_run IMAGE=app:broken PUSH_TO="$REG_HOST/app:broken-slim"
[[ $rc -eq 6 ]] || { cat "$tmp/err" >&2; fail "verification failure: exit $rc, expected 6"; }
grep -q "about.html" "$tmp/err" || fail "the failure does not name what differed: $(cat "$tmp/err")"
jq_ok "$o/slimtrace.report.json" '.outcome == "verify-failed"' "report of the failed build"
grep -q "Verification failed" "$o/summary.md" || fail "no failure in the summary: $(head -n 5 "$o/summary.md")"
docker image inspect app.slim:broken >/dev/null 2>&1 && fail "an unverified image was loaded"
skopeo inspect --tls-verify=false "docker://$REG_HOST/app:broken-slim" >/dev/null 2>&1 &&
  fail "an unverified image was pushed"

step "a private key that would ship: xray fails the step with exit 1, nothing pushed"
mkdir -p "$r/www/tls"
printf -- '-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n' \
  >"$r/www/tls/server.key"
(cd "$repo" && DOCKER_BUILDKIT=0 docker build -q -t app:key . >/dev/null) || fail "docker build failed"
echo '[{"path": "/"}, {"path": "/tls/server.key"}]' >"$repo/.slimtrace/probes.json"
ci_run IMAGE=app:key PUSH_TO="$REG_HOST/app:key-slim"
[[ $rc -eq 1 ]] || { cat "$tmp/err" >&2; fail "a shipped private key: exit $rc, expected 1"; }
grep -q "private key" "$tmp/err" || fail "the xray failure does not say what it found: $(cat "$tmp/err")"
skopeo inspect --tls-verify=false "docker://$REG_HOST/app:key-slim" >/dev/null 2>&1 &&
  fail "an image with a private key was pushed"
echo "PASS"
