#!/usr/bin/env bash
# Command probes: --exec-probe runs inside the container (and is traced like the app),
# --probe-cmd runs the user's own command on the host inside the container's network namespace,
# where 127.0.0.1:PORT is the app. Failing commands are reported with exit 5.
# Usage: probe_exec.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"
source "$here/lib/probe_fixtures.bash"
probe_require_env "$1"
require_tools wget

step "building the fixture images"
layout="$tmp/img"
probe_build_web "$layout"
probe_build_tcp "$layout"
web="oci:$layout:web"
quick=(--stop-grace 1)
host_free=1
host_port_free 8080 || host_free=0
host_port_free 6379 || host_free=0

step "--exec-probe 'cat /etc/hostname': exit 0 recorded, its file access traced"
require_flags --exec-probe
out="$tmp/exec/trace.json"
mkdir -p "$tmp/exec"
trace_ok "$out" "$web" "${quick[@]}" --no-crawl --exec-probe 'cat /etc/hostname'
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.kind == "exec") | [.target, .exit_code, .met]]' '[["cat /etc/hostname",0,true]]' \
  "the exec probe"
jq_is "$p" '[.results[] | select(.kind == "exec") | .stdout_digest | test("^sha256:[0-9a-f]{64}$")]' '[true]' \
  "stdout digest of the exec probe"
no_probe_failures "$p"
trace_opened "$out" /etc/hostname
jq_is "$out" '[.execs[] | select(.argv == ["cat", "/etc/hostname"] or .argv[-1] == "/etc/hostname")] | length > 0' true \
  "exec of cat /etc/hostname in the trace"

step "--probe-cmd reaches the app at \$SLIMTRACE_TARGET_HOST:8080 from the host"
require_flags --probe-cmd
out="$tmp/cmd/trace.json"
mkdir -p "$tmp/cmd"
# shellcheck disable=SC2016 # expanded by the probe's shell, not this one
trace_ok "$out" "$web" "${quick[@]}" --no-crawl \
  --probe-cmd 'nc -z $SLIMTRACE_TARGET_HOST 8080 || wget -q -O- http://$SLIMTRACE_TARGET_HOST:8080/' \
  --probe-cmd "wget -q -O '$tmp/cmd/about.html' http://\$SLIMTRACE_TARGET_HOST:8080/about.html" \
  --probe-cmd "echo \"\$SLIMTRACE_TARGET_HOST \$SLIMTRACE_PORTS \$(readlink /proc/self/ns/net)\" >'$tmp/cmd/env.txt'"
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.kind == "host-cmd") | [.exit_code, .met]]' '[[0,true],[0,true],[0,true]]' \
  "the host command probes"
no_probe_failures "$p"
grep -q 'About this fixture' "$tmp/cmd/about.html" || fail "the host command did not get the app's page"
read -r host ports ns <"$tmp/cmd/env.txt"
[[ $host == 127.0.0.1 ]] || fail "SLIMTRACE_TARGET_HOST is '$host'"
[[ $ports == 8080 ]] || fail "SLIMTRACE_PORTS is '$ports'"
[[ $ns == net:* && $ns != "$(readlink /proc/self/ns/net)" ]] ||
  fail "the host command ran in network namespace '$ns', the host's is $(readlink /proc/self/ns/net)"
trace_opened "$out" /www/about.html
# The host command is not part of the container: it must not show up in the trace.
jq_is "$out" '[.execs[] | select(.path | test("wget"))] | length' 0 "host command traced as part of the container"

step "--probe-cmd against the TCP service (what redis-cli would do)"
out="$tmp/tcpcmd/trace.json"
mkdir -p "$tmp/tcpcmd"
# shellcheck disable=SC2016
trace_ok "$out" "oci:$layout:tcp" "${quick[@]}" \
  --probe-cmd 'printf "PING\n" | /bin/busybox nc -w 2 $SLIMTRACE_TARGET_HOST $SLIMTRACE_PORT | grep -qx PING'
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.kind == "host-cmd") | [.exit_code, .met]]' '[[0,true]]' "the host command probe"
jq_is "$p" '[.results[] | select(.kind == "tcp") | .met]' '[true]' "the default tcp probe"
no_probe_failures "$p"

step "failing command probes: met=false, exit codes recorded, exit 5 naming them"
out="$tmp/bad/trace.json"
mkdir -p "$tmp/bad"
run_trace "$out" "$web" "${quick[@]}" --no-crawl --exec-probe 'cat /no/such/file' --probe-cmd 'exit 7'
[[ $rc -eq 5 ]] || { cat "$tmp/err" >&2; fail "failing command probes exited $rc, expected 5"; }
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.kind == "exec") | [.met, .exit_code != 0]]' '[[false,true]]' "failing exec probe"
jq_is "$p" '[.results[] | select(.kind == "host-cmd") | [.exit_code, .met]]' '[[7,false]]' "failing host command"
grep -q 'cat /no/such/file' "$tmp/err" || fail "the failure message does not name the exec probe: $(cat "$tmp/err")"
grep -q 'exit 7' "$tmp/err" || fail "the failure message does not name the host command: $(cat "$tmp/err")"
jq_is "$out" '[.files[] | select(.path == "/no/such/file") | .found]' '[false]' "failed lookup of the exec probe"

if ((host_free)); then
  if ! { host_port_free 8080 && host_port_free 6379; }; then
    fail "a host listener appeared on 8080 or 6379 during the test"
  fi
fi
echo OK
