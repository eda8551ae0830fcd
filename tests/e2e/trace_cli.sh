#!/usr/bin/env bash
# `slimtrace trace` as a user drives it: the trace and the container's logs land next to -o, the
# exit code of the container is recorded, flags change the run, and failures give one line and
# the documented exit code.
# Usage: trace_cli.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"

slimtrace=$(realpath "$1")
require_root
require_tools umoci jq
[[ -x /bin/busybox ]] || skip "/bin/busybox (busybox-static) is missing"

tmp=$(mktemp -d /tmp/slimtrace-e2e-trace.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

step "building a busybox image"
layout="$tmp/img"
add_web_user() {
  mkdir -p "$1/srv"
  printf 'web:x:33:33:web:/srv:/bin/sh\n' >>"$1/etc/passwd"
  printf 'web:x:33:\n' >>"$1/etc/group"
}
busybox_image "$layout" "sh sleep true echo cat ls env pwd id" add_web_user
umoci config --image "$layout:latest" --config.entrypoint /bin/sh --config.cmd=-c --config.cmd='echo default' \
  --config.env IMG=1 --config.workingdir /srv --config.user web >/dev/null
img="oci:$layout:latest"

step "a container that ends by itself"
set +e
"$slimtrace" trace "$img" -o "$tmp/t.json" -- -c 'cat /etc/hostname; ls /nonexistent; exit 3' 2>"$tmp/err"
rc=$?
set -e
if [[ $rc -eq 4 ]]; then skip "$(cat "$tmp/err")"; fi
[[ $rc -eq 0 ]] || { cat "$tmp/err" >&2; fail "trace failed with exit code $rc"; }
[[ $(jq .exit_code "$tmp/t.json") == 3 ]] || fail "exit code 3 not in the trace"
[[ $(jq .stopped_by_slimtrace "$tmp/t.json") == false ]] || fail "stopped_by_slimtrace should be false"
[[ $(jq -c .command "$tmp/t.json") == '["/bin/sh","-c","cat /etc/hostname; ls /nonexistent; exit 3"]' ]] ||
  fail "command is $(jq -c .command "$tmp/t.json")"
[[ $(jq -r .image "$tmp/t.json") == "$img" ]] || fail "image reference not recorded as given"
[[ $(jq -r .runtime "$tmp/t.json") == */runc || $(jq -r .runtime "$tmp/t.json") == */crun ]] || fail "runtime not recorded"
grep -qE '^[0-9a-f]{12}$' "$tmp/t.json.stdout.log" || fail "stdout log: $(cat "$tmp/t.json.stdout.log")"
grep -q '/nonexistent' "$tmp/t.json.stderr.log" || fail "stderr log: $(cat "$tmp/t.json.stderr.log")"
grep -q 'exit code 3' "$tmp/err" || fail "no summary on stderr: $(cat "$tmp/err")"
[[ $(jq '[.files[] | select(.path == "/etc/hostname" and .found)] | length' "$tmp/t.json") == 1 ]] ||
  fail "/etc/hostname not recorded as opened"
[[ $(jq '[.files[] | select(.path == "/nonexistent" and .errno == 2)] | length' "$tmp/t.json") == 1 ]] ||
  fail "failed lookup of /nonexistent (ENOENT) not recorded"

step "user, working dir, env and mounts"
mkdir -p "$tmp/host"
echo 'host file' >"$tmp/host/f.txt"
"$slimtrace" -q trace "$img" -o "$tmp/u.json" -e EXTRA=2 -e IMG=override --mount "$tmp/host:/mnt:ro" \
  -- -c 'id -u; pwd; echo $IMG $EXTRA; cat /mnt/f.txt; echo x > /mnt/g 2>/dev/null || echo ro'
[[ $(cat "$tmp/u.json.stdout.log") == $'33\n/srv\noverride 2\nhost file\nro' ]] ||
  fail "unexpected output: $(cat "$tmp/u.json.stdout.log")"

step "--entrypoint clears the image's Cmd"
"$slimtrace" -q trace "$img" -o "$tmp/e.json" --entrypoint /bin/echo
[[ $(cat "$tmp/e.json.stdout.log") == "" ]] || fail "Cmd was kept: $(cat "$tmp/e.json.stdout.log")"

step "--duration stops a long-running container; --show-logs streams its output"
"$slimtrace" trace "$img" -o "$tmp/d.json" --duration 1 --stop-grace 1 --show-logs \
  -- -c 'echo hello-from-container; sleep 1000' 2>"$tmp/err"
[[ $(jq .stopped_by_slimtrace "$tmp/d.json") == true ]] || fail "stopped_by_slimtrace should be true"
[[ $(jq .exit_code "$tmp/d.json") == null ]] || fail "no exit code expected for a stopped container"
grep -q hello-from-container "$tmp/err" || fail "--show-logs did not stream: $(cat "$tmp/err")"

step "failures: one line and the documented exit code"
expect_exit() {
  local want=$1
  shift
  set +e
  "$slimtrace" "$@" 2>"$tmp/err" >/dev/null
  local got=$?
  set -e
  [[ $got -eq $want ]] || { cat "$tmp/err" >&2; fail "'$*' exited $got, expected $want"; }
  [[ $(wc -l <"$tmp/err") -eq 1 ]] || { cat "$tmp/err" >&2; fail "'$*' printed more than one line"; }
}
expect_exit 3 trace "oci:$tmp/missing" -o "$tmp/x.json"
expect_exit 3 trace "$img" -o "$tmp/x.json" --entrypoint /no/such/binary
expect_exit 4 trace "$img" -o "$tmp/x.json" --runtime /no/such/runtime
expect_exit 2 trace "$img" -o "$tmp/x.json" --tracer bogus
expect_exit 2 trace "$img" -o "$tmp/x.json" --mount /tmp
if command -v crun >/dev/null && ! "$slimtrace" -q trace "$img" -o "$tmp/c.json" --runtime crun 2>/dev/null; then
  expect_exit 4 trace "$img" -o "$tmp/x.json" --runtime crun
  grep -q crun "$tmp/err" || fail "the crun error does not name crun"
fi
[[ ! -e "$tmp/x.json" ]] || fail "a trace was written by a failed run"
echo OK
