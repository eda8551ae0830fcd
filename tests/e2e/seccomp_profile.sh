#!/usr/bin/env bash
# A seccomp profile made from a trace lets the same container start and run under plain runc, with
# noNewPrivileges false (Docker's default: runc loads the filter early) and true (runc loads it
# just before execve), and it really filters: without a syscall the app needs, the app fails.
# Usage: seccomp_profile.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"

slimtrace=$(realpath "$1")
require_root
require_tools umoci jq runc
[[ -x /bin/busybox ]] || skip "/bin/busybox (busybox-static) is missing"

tmp=$(mktemp -d /tmp/slimtrace-e2e-seccomp.XXXXXX)
cid_base="slimtrace-e2e-seccomp-$$"
cleanup() {
  local c
  for c in nnp0 nnp1 neg; do runc delete -f "$cid_base-$c" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# The driver that calls packer::make_seccomp_profile: built by CMake when the lead wired it in,
# else built here against the static libraries of the build dir.
driver="${SLIMTRACE_BUILD_DIR:-}/tests/profile_from_trace"
if [[ ! -x $driver ]]; then
  build=${SLIMTRACE_BUILD_DIR:-$(dirname "$(dirname "$slimtrace")")}
  src=${SLIMTRACE_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
  driver="$tmp/profile_from_trace"
  g++ -std=c++20 -I"$src/packer/include" -I"$src/tracer/include" -I"$src/image/include" \
    "$here/profile_from_trace.cpp" "$build/packer/libslimtrace_packer.a" "$build/tracer/libslimtrace_trace.a" \
    "$build/image/libslimtrace_image.a" -lseccomp -lspdlog -lfmt -o "$driver" 2>"$tmp/gxx.err" ||
    skip "could not build the profile_from_trace driver: $(head -n 3 "$tmp/gxx.err")"
fi

step "building a busybox image"
layout="$tmp/img"
busybox_image "$layout" "sh ls echo cat true"
umoci config --image "$layout:latest" --config.cmd /bin/sh >/dev/null
img="oci:$layout:latest"
app='echo hi; ls /'

step "tracing the app"
set +e
"$slimtrace" -q trace "$img" -o "$tmp/t.json" -- /bin/sh -c "$app" 2>"$tmp/err"
rc=$?
set -e
if [[ $rc -eq 4 ]]; then skip "$(cat "$tmp/err")"; fi
[[ $rc -eq 0 ]] || { cat "$tmp/err" >&2; fail "trace failed with exit code $rc"; }
[[ $(jq .syscalls.recorded "$tmp/t.json") == true ]] || fail "the trace recorded no syscalls"
grep -qx hi "$tmp/t.json.stdout.log" || fail "traced run did not print hi: $(cat "$tmp/t.json.stdout.log")"

step "making the profile"
"$driver" "$tmp/t.json" --arch amd64 >"$tmp/profile.json" 2>"$tmp/warn"
[[ $(jq -r .defaultAction "$tmp/profile.json") == SCMP_ACT_ERRNO ]] || fail "defaultAction: $(cat "$tmp/profile.json")"
[[ $(jq .defaultErrnoRet "$tmp/profile.json") == 1 ]] || fail "defaultErrnoRet is not EPERM"
[[ $(jq -c .architectures "$tmp/profile.json") == '["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"]' ]] ||
  fail "architectures: $(jq -c .architectures "$tmp/profile.json")"
names=$(jq -r '.syscalls[0].names[]' "$tmp/profile.json")
for n in execve write exit_group rt_sigreturn restart_syscall; do
  grep -qx "$n" <<<"$names" || fail "'$n' is not allowed by the profile"
done
[[ $names == "$(LC_ALL=C sort <<<"$names")" ]] || fail "names are not sorted"
echo "allowed: $(wc -l <<<"$names") syscalls"
"$driver" "$tmp/t.json" --arch amd64 >"$tmp/profile2.json" 2>/dev/null
cmp -s "$tmp/profile.json" "$tmp/profile2.json" || fail "the profile differs between two runs on the same trace"
if "$driver" <(jq '.tracer = "fanotify" | .syscalls.recorded = false' "$tmp/t.json") >/dev/null 2>"$tmp/ferr"; then
  fail "a fanotify trace was accepted"
fi
grep -q 'fanotify tracer, which does not record syscalls' "$tmp/ferr" || fail "fanotify refusal: $(cat "$tmp/ferr")"

step "unpacking the image for runc"
"$slimtrace" -q unpack "$img" "$tmp/rootfs"

# Runs the app under plain runc in bundle $1 with profile $2 and noNewPrivileges $3; prints the
# container's stdout, returns its exit code.
run_under() {
  local name=$1 profile=$2 nnp=$3 b="$tmp/bundle-$1"
  mkdir -p "$b"
  (cd "$b" && runc spec)
  jq --slurpfile p "$profile" --arg root "$tmp/rootfs" --arg app "$app" --argjson nnp "$nnp" '
    .root = {path: $root, readonly: true}
    | .process.terminal = false
    | .process.args = ["/bin/sh", "-c", $app]
    | .process.noNewPrivileges = $nnp
    | .linux.seccomp = $p[0]' "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
  local rc=0
  runc run --bundle "$b" "$cid_base-$name" </dev/null >"$b/out" 2>"$b/err" || rc=$?
  cat "$b/out"
  return $rc
}

step "running under the profile with noNewPrivileges=false"
out=$(run_under nnp0 "$tmp/profile.json" false) || { cat "$tmp/bundle-nnp0/err" >&2; fail "container failed with noNewPrivileges=false"; }
[[ $(head -n 1 <<<"$out") == hi ]] || fail "noNewPrivileges=false: unexpected output: $out"
grep -qx bin <<<"$out" || fail "noNewPrivileges=false: ls / did not list bin: $out"

step "running under the profile with noNewPrivileges=true"
out=$(run_under nnp1 "$tmp/profile.json" true) || { cat "$tmp/bundle-nnp1/err" >&2; fail "container failed with noNewPrivileges=true"; }
[[ $(head -n 1 <<<"$out") == hi ]] || fail "noNewPrivileges=true: unexpected output: $out"
grep -qx bin <<<"$out" || fail "noNewPrivileges=true: ls / did not list bin: $out"

step "the profile filters: without 'write' the app cannot print"
jq '.syscalls[0].names -= ["write", "writev"]' "$tmp/profile.json" >"$tmp/neg.json"
set +e
out=$(run_under neg "$tmp/neg.json" true)
rc=$?
set -e
[[ $rc -ne 0 || $out != *hi* ]] || fail "the app printed hi without write: rc=$rc out=$out"
echo OK
