#!/usr/bin/env bash
# `slimtrace build` and `slimtrace profile` end to end on small busybox images (the realistic
# Debian images are in build_debian.sh): default flags give a verified image and profile; a
# minification that breaks the app fails verification with exit 6 and writes nothing; a failing
# original exits 5; --explain, --no-verify, --keep-unverified and the report.
# Usage: build_busybox.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"
source "$here/lib/probe_fixtures.bash"
probe_require_env "$1"

step "building the fixture images"
layout="$tmp/img"
probe_build_web "$layout"
probe_build_batch "$layout"
probe_build_tcp "$layout"
cp -a "$layout" "$tmp/img.orig"
quick=(--stop-grace 1)

# build_run ARGS...: runs `slimtrace build ARGS...` with stderr in $tmp/err; exit code in $rc.
build_run() {
  set +e
  (cd "$tmp" && "$slimtrace" build "$@" 2>"$tmp/err" >"$tmp/out")
  rc=$?
  set -e
  if [[ $rc -eq 4 ]]; then skip "runtime or tracer unavailable: $(head -n 3 "$tmp/err")"; fi
}
expect_rc() {
  [[ $rc -eq $1 ]] || { cat "$tmp/err" >&2; fail "$2: exit code $rc, expected $1"; }
}

step "web site, default flags: verified image beside the input, profile beside the output, report"
build_run "oci:$layout:web" "${quick[@]}"
expect_rc 0 "build of the web image"
out="$tmp/img.slim"
[[ -f $out/index.json ]] || fail "no OCI layout at the default output $out"
"$slimtrace" validate "oci:$out:web" >/dev/null || fail "the minified image does not validate"
skopeo inspect "oci:$out:web" >/dev/null || fail "skopeo cannot read the minified image"
[[ -s $tmp/img.slim.seccomp.json ]] || fail "no seccomp profile beside the output"
jq_is "$tmp/img.slim.seccomp.json" .defaultAction '"SCMP_ACT_ERRNO"' "profile default action"
r="$tmp/slimtrace.report.json"
[[ -s $r ]] || fail "no report in the working directory"
jq_is "$r" .schema '"slimtrace.report/v1"' "report schema"
jq_is "$r" .outcome '"ok"' "outcome"
jq_is "$r" '.verification | [.ran, .passed, .under_seccomp_profile]' '[true,true,true]' "verification"
jq_is "$r" '.output | [.written, .verified]' '[true,true]' "output state"
jq_is "$r" '[.files.kept[] | select(.path == "/www/index.html") | .reason]' '["traced"]' "index.html kept"
jq_is "$r" '[.files.kept[] | select(.path == "/bin/httpd") | .reason]' '["traced"]' "the httpd link kept"
jq_is "$r" '[.files.kept[] | select(.path == "/www/assets") | .reason]' '["parent"]' "parent directory kept"
# The crawl stops at depth 3, so the end of the page chain was never served and is not kept.
jq_is "$r" '[.files.removed[] | select(.path == "/www/deep/8.html") | .reason]' '["unused"]' \
  "unreached page removed"
jq_is "$r" '[.files.removed[] | select(.path == "/bin/wc")] | length' 1 "unused applet removed"
jq_is "$r" '.seccomp.allowed | index("accept4") != null or index("accept") != null' true \
  "the profile allows accepting connections"
jq_is "$r" '[.phases[].name]' '["read","xray","trace","select","seccomp","pack","verify","write"]' "phases"
n_orig=$(jq '.probes.original.results | length' "$r")
n_min=$(jq '.probes.minified.results | length' "$r")
[[ $n_orig -eq $n_min && $n_orig -gt 3 ]] || fail "probe counts: original $n_orig, minified $n_min"
grep -q "verification: passed" "$tmp/err" || fail "no verification line in the summary: $(cat "$tmp/err")"
# The input is never changed.
diff -r "$tmp/img.orig" "$layout" >/dev/null || fail "the input layout was modified"

step "the minified image runs under plain runc with its own seccomp profile"
b="$tmp/runc-bundle"
umoci unpack --image "$out:web" "$b" >/dev/null
jq --slurpfile p "$tmp/img.slim.seccomp.json" \
  '.process.args = ["/bin/httpd", "-h", "/www", "-p", "8080"] | .process.terminal = false
   | .linux.seccomp = $p[0]' "$b/config.json" >"$b/config.json.new"
mv "$b/config.json.new" "$b/config.json"
# httpd without -f daemonises and the init exits 0: the start under the profile is what is checked.
cid="slimtrace-e2e-build-$$"
timeout 30 runc run --bundle "$b" "$cid" >"$tmp/runc.out" 2>&1 || {
  cat "$tmp/runc.out" >&2
  runc delete -f "$cid" >/dev/null 2>&1 || true
  fail "the minified image did not start under runc with its profile"
}
runc delete -f "$cid" >/dev/null 2>&1 || true

step "--explain says why a file is kept"
build_run "oci:$layout:web" "${quick[@]}" -o "oci:$tmp/explained" --explain /bin/busybox --explain /www \
  --report "$tmp/explained.json"
expect_rc 0 "build with --explain"
grep -q "/bin/busybox" "$tmp/out" || fail "--explain printed nothing for /bin/busybox: $(cat "$tmp/out")"
grep -Eqi "traced|symlink|hardlink" "$tmp/out" || fail "--explain gives no reason: $(cat "$tmp/out")"

step "a minification that breaks the app fails verification: exit 6, nothing written"
build_run "oci:$layout:web" "${quick[@]}" -o "oci:$tmp/broken" --seccomp-out "$tmp/broken.json" \
  --exclude-pattern /www/about.html --report "$tmp/broken-report.json"
expect_rc 6 "build with a needed file excluded"
grep -q "about.html" "$tmp/err" || fail "the failure does not name the probe or path: $(cat "$tmp/err")"
grep -q "404" "$tmp/err" || fail "the failure does not say what changed: $(cat "$tmp/err")"
[[ ! -e $tmp/broken ]] || fail "an unverified image was written"
[[ ! -e $tmp/broken.json ]] || fail "an unverified profile was written"
jq_is "$tmp/broken-report.json" .outcome '"verify-failed"' "outcome of the broken build"
jq_is "$tmp/broken-report.json" .verification.missing_paths '["/www/about.html"]' "missing paths"
ls "$tmp" | grep -q '\.tmp' && fail "temp files left in $tmp: $(ls "$tmp")"

step "--keep-unverified writes it anyway, with the same exit code"
build_run "oci:$layout:web" "${quick[@]}" -o "oci:$tmp/kept" --exclude-pattern /www/about.html \
  --keep-unverified --report "$tmp/kept-report.json"
expect_rc 6 "build with --keep-unverified"
[[ -f $tmp/kept/index.json ]] || fail "--keep-unverified did not write the image"
jq_is "$tmp/kept-report.json" '.output | [.written, .verified]' '[true,false]' "kept output state"

step "an original that fails its probes: exit 5"
build_run "oci:$layout:web" "${quick[@]}" -o "oci:$tmp/never" --exec-probe 'test -e /no-such-file' \
  --report "$tmp/never.json"
expect_rc 5 "build of an image failing its own probes"
[[ ! -e $tmp/never ]] || fail "an image was written although the original failed its probes"

step "batch job: exit code and stdout compared; --no-verify skips the second run"
build_run "oci:$layout:batch" -o "oci:$tmp/batch" --report "$tmp/batch.json"
expect_rc 0 "build of the batch image"
jq_is "$tmp/batch.json" '.probes.minified.container_exit_code' 0 "minified batch exit code"
jq_is "$tmp/batch.json" '.probes.original.container_stdout_digest == .probes.minified.container_stdout_digest' \
  true "same stdout"
build_run "oci:$layout:batch" -o "oci:$tmp/batch-nv" --no-verify --report "$tmp/batch-nv.json"
expect_rc 0 "build --no-verify"
jq_is "$tmp/batch-nv.json" '.verification.ran' false "--no-verify"
grep -q "skipped" "$tmp/err" || fail "the summary does not say verification was skipped"

step "an output that cannot be written: exit 7, the verified profile and the report are kept"
build_run "oci:$layout:batch" -o "oci:/proc/slimtrace-cannot-write" --seccomp-out "$tmp/wf.json" \
  --report "$tmp/wf-report.json"
expect_rc 7 "build to an unwritable output"
jq_is "$tmp/wf-report.json" .outcome '"write-failed"' "outcome of the failed write"
jq_is "$tmp/wf-report.json" '.verification.passed' true "verification before the failed write"
[[ -s $tmp/wf.json ]] || fail "the verified profile was lost with the failed write"
grep -q "/proc/slimtrace-cannot-write" "$tmp/err" || fail "the error does not name the output: $(cat "$tmp/err")"

step "Ctrl-C during the build: exit 130, no container, mount, work dir or output left"
mkdir -p "$tmp/w"
(cd "$tmp" && exec "$slimtrace" --work-dir "$tmp/w" build "oci:$layout:web" "${quick[@]}" \
  -o "oci:$tmp/interrupted" --continue-after timeout:60 --report "$tmp/interrupted.json" 2>"$tmp/int.err") &
bpid=$!
for _ in $(seq 1 100); do grep -q "probing port" "$tmp/int.err" 2>/dev/null && break; sleep 0.1; done
cpid=$(pgrep -f "$tmp/w/" | head -n 1 || true)
kill -INT "$bpid"
set +e
wait "$bpid"
rc=$?
set -e
expect_rc 130 "interrupted build"
[[ ! -e $tmp/interrupted && ! -e $tmp/interrupted.json ]] || fail "an interrupted build left output"
grep -q "$tmp/w" /proc/mounts && fail "mounts left: $(grep "$tmp/w" /proc/mounts)"
[[ -z $(ls -A "$tmp/w") ]] || fail "work dir left: $(ls -A "$tmp/w")"
# Processes whose command line names the work dir (the runtime, the container's init).
pgrep -f "$tmp/w/" >/dev/null && fail "processes left: $(pgrep -af "$tmp/w/")"
[[ -z $cpid ]] || ! kill -0 "$cpid" 2>/dev/null || fail "process $cpid of the run is still there"

step "profile: a verified seccomp profile and a report, no image"
set +e
(cd "$tmp" && "$slimtrace" profile "oci:$layout:tcp" "${quick[@]}" -o "$tmp/tcp.seccomp.json" \
  --report "$tmp/tcp-report.json" 2>"$tmp/err")
rc=$?
set -e
expect_rc 0 "profile of the tcp service"
jq_is "$tmp/tcp.seccomp.json" '.syscalls[0].action' '"SCMP_ACT_ALLOW"' "profile allow list"
jq_is "$tmp/tcp-report.json" '[.command, .outcome, .output, .verification.passed]' '["profile","ok",null,true]' \
  "profile report"
set +e
"$slimtrace" profile "oci:$layout:tcp" --tracer fanotify -o "$tmp/x.json" 2>"$tmp/err"
rc=$?
set -e
expect_rc 2 "profile with the fanotify tracer"
grep -q "syscalls" "$tmp/err" || fail "the refusal does not say why: $(cat "$tmp/err")"
echo "PASS"
