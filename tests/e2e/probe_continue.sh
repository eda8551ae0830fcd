#!/usr/bin/env bash
# When to stop (--continue-after exit|timeout:N|signal|enter, --probe-timeout) and what a user sees
# when the container never gets ready: exit 5 with the container's log tail.
# Usage: probe_continue.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"
source "$here/lib/probe_fixtures.bash"
probe_require_env "$1"

step "building the fixture images"
layout="$tmp/img"
probe_build_web "$layout"
probe_build_tcp "$layout"
web="oci:$layout:web"
quick=(--stop-grace 1 --no-crawl)
require_flags --continue-after --ready-timeout --probe-timeout --expose

# Waits until file $1 contains $2, for at most 60 s, while process $3 runs.
wait_for_text() {
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { cat "$1" >&2; fail "slimtrace ended before printing '$2'"; }
    sleep 0.1
  done
  cat "$1" >&2
  fail "slimtrace did not print '$2' within 60 s"
}

step "--continue-after timeout:3: the container keeps running 3 s after the probes"
out="$tmp/timeout/trace.json"
mkdir -p "$tmp/timeout"
trace_ok "$out" "$web" "${quick[@]}" --continue-after timeout:3
p=$(probes_of "$out")
jq -e '.continue_after | test("^timeout")' "$p" >/dev/null || fail "continue_after is $(jq .continue_after "$p")"
jq_is "$p" .continue_after_default false "continue_after_default"
jq_is "$p" '[.results[] | select(.path == "/") | .status]' '[200]' "GET / before the wait"
jq_is "$out" '.duration_seconds >= 3' true "the run lasted at least 3 s (duration_seconds $(jq .duration_seconds "$out"))"
jq_is "$out" .stopped_by_slimtrace true "stopped_by_slimtrace"

step "--continue-after signal: runs until slimtrace gets SIGUSR1"
out="$tmp/signal/trace.json"
mkdir -p "$tmp/signal"
"$slimtrace" trace "$web" -o "$out" "${quick[@]}" --continue-after signal 2>"$tmp/signal/err" &
pid=$!
wait_for_text "$tmp/signal/err" SIGUSR1 "$pid"
sleep 1
kill -0 "$pid" 2>/dev/null || { cat "$tmp/signal/err" >&2; fail "slimtrace stopped without the signal"; }
kill -USR1 "$pid"
set +e
wait "$pid"
rc=$?
set -e
[[ $rc -eq 0 ]] || { cat "$tmp/signal/err" >&2; fail "--continue-after signal exited $rc"; }
p=$(probes_of "$out")
jq_is "$p" .continue_after '"signal"' "continue_after"
jq_is "$p" .timed_out false "timed_out"
jq_is "$p" '[.results[] | select(.path == "/") | .status]' '[200]' "GET / before the wait"
no_probe_failures "$p"

step "--continue-after enter: runs until a key press on the terminal"
if command -v script >/dev/null 2>&1; then
  out="$tmp/enter/trace.json"
  mkdir -p "$tmp/enter"
  mkfifo "$tmp/enter/keys"
  # script(1) gives slimtrace a terminal; the fifo is the keyboard.
  script -qfec "'$slimtrace' trace '$web' -o '$out' --stop-grace 1 --no-crawl --continue-after enter" /dev/null \
    <"$tmp/enter/keys" >"$tmp/enter/log" 2>&1 &
  pid=$!
  exec 3>"$tmp/enter/keys"
  wait_for_text "$tmp/enter/log" 'press Enter' "$pid"
  sleep 1
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/enter/log" >&2; fail "slimtrace stopped without a key press"; }
  printf '\n' >&3
  set +e
  wait "$pid"
  rc=$?
  set -e
  exec 3>&-
  [[ $rc -eq 0 ]] || { cat "$tmp/enter/log" >&2; fail "--continue-after enter exited $rc"; }
  jq_is "$(probes_of "$out")" .continue_after '"enter"' "continue_after"
else
  echo "note: script(1) is missing; --continue-after enter is only checked without a terminal"
fi
out="$tmp/enter-notty/trace.json"
mkdir -p "$tmp/enter-notty"
run_trace "$out" "$web" "${quick[@]}" --continue-after enter </dev/null
[[ $rc -eq 2 ]] || { cat "$tmp/err" >&2; fail "--continue-after enter without a terminal exited $rc, expected 2"; }
grep -q terminal "$tmp/err" || fail "the error does not say stdin is not a terminal: $(cat "$tmp/err")"

step "--continue-after exit on a server: probes first, then its own exit code"
out="$tmp/exit/trace.json"
mkdir -p "$tmp/exit"
# httpd without -f goes to the background; the shell (PID 1) ends the container 3 s later.
trace_ok "$out" "$web" "${quick[@]}" --continue-after exit --entrypoint /bin/sh \
  -- -c 'httpd -p 8080 -h /www; sleep 3; echo finished; exit 4'
p=$(probes_of "$out")
jq_is "$p" .continue_after '"exit"' "continue_after"
jq_is "$p" '[.results[] | select(.path == "/") | .status]' '[200]' "GET / before the exit"
jq_is "$p" .container_exit_code 4 "container_exit_code"
jq_is "$out" .exit_code 4 "exit code in the trace"
jq_is "$out" .stopped_by_slimtrace false "stopped_by_slimtrace"
[[ $(cat "$out.stdout.log") == finished ]] || fail "stdout: $(cat "$out.stdout.log")"

step "a container that never listens: exit 5, the error names the port, with the log tail"
out="$tmp/never/trace.json"
mkdir -p "$tmp/never"
run_trace "$out" "oci:$layout:tcp" --stop-grace 1 --ready-timeout 3 --entrypoint /bin/sh \
  -- -c 'echo "tcp fixture: waiting for a config that never comes" >&2; exec sleep 1000'
[[ $rc -eq 5 ]] || { cat "$tmp/err" >&2; fail "a container that never listens exited $rc, expected 5"; }
grep -q 6379 "$tmp/err" || fail "the message does not name port 6379: $(cat "$tmp/err")"
grep -q 'a config that never comes' "$tmp/err" || fail "the message has no log tail: $(cat "$tmp/err")"
p=$(probes_of "$out")
[[ -s $out && -s $p ]] || fail "trace or probes not written after a readiness failure"
jq_is "$p" .ready false "ready"
jq -e '.error | test("6379")' "$p" >/dev/null || fail "probes error: $(jq .error "$p")"
jq -e '.log_tail | test("a config that never comes")' "$p" >/dev/null || fail "log_tail: $(jq .log_tail "$p")"

step "a server that crashes before listening: exit 5 with its last words"
out="$tmp/crash/trace.json"
mkdir -p "$tmp/crash"
run_trace "$out" "$web" --stop-grace 1 --ready-timeout 30 --entrypoint /bin/sh \
  -- -c 'echo "httpd: cannot read /etc/web.conf" >&2; exit 1'
[[ $rc -eq 5 ]] || { cat "$tmp/err" >&2; fail "a crash before readiness exited $rc, expected 5"; }
grep -q 'cannot read /etc/web.conf' "$tmp/err" || fail "the message has no log tail: $(cat "$tmp/err")"
p=$(probes_of "$out")
jq_is "$p" .ready false "ready"
jq_is "$out" .exit_code 1 "exit code in the trace"
step "--expose 9999 on the tcp image: 9999 never listens (6379 does): exit 5 with the log tail"
out="$tmp/partial/trace.json"
mkdir -p "$tmp/partial"
run_trace "$out" "oci:$layout:tcp" --stop-grace 1 --expose 9999 --ready-timeout 3
[[ $rc -eq 5 ]] || { cat "$tmp/err" >&2; fail "a port that never listens exited $rc, expected 5"; }
grep -q 9999 "$tmp/err" || fail "the message does not name port 9999: $(cat "$tmp/err")"
grep -q 'tcp fixture: listening on 6379' "$tmp/err" || fail "the message has no log tail: $(cat "$tmp/err")"
p=$(probes_of "$out")
[[ -s $out && -s $p ]] || fail "trace or probes not written after a readiness failure"
jq_is "$p" .ready false "ready"
jq -e '.error | test("9999")' "$p" >/dev/null || fail "probes error: $(jq .error "$p")"
jq -e '.log_tail | test("tcp fixture: listening on 6379")' "$p" >/dev/null || fail "log_tail: $(jq .log_tail "$p")"

step "--probe-timeout fires during a long wait: a warning, timed_out, not a failure"
out="$tmp/ptimeout/trace.json"
mkdir -p "$tmp/ptimeout"
trace_ok "$out" "$web" "${quick[@]}" --continue-after timeout:600 --probe-timeout 3
p=$(probes_of "$out")
jq_is "$p" .timed_out true "timed_out"
jq_is "$p" '.warnings | length > 0' true "a warning for the probe timeout"
jq_is "$out" '.duration_seconds < 600' true "the probe timeout did not stop the wait"
grep -qi timeout "$tmp/err" || fail "stderr does not mention the timeout: $(cat "$tmp/err")"

echo OK
