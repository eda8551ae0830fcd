#!/usr/bin/env bash
# The bar of the probes: a user who names only the image gets a complete trace for a web site, a
# non-HTTP TCP service, an HTTP API and a batch job with no ports - no probe flags at all.
# (--stop-grace 1 only shortens the stop of servers that ignore SIGTERM as PID 1.)
# Usage: probe_defaults.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"
source "$here/lib/probe_fixtures.bash"
probe_require_env "$1"

step "building the fixture images"
layout="$tmp/img"
probe_build_web "$layout"
probe_build_tcp "$layout"
probe_build_api "$layout" "$tmp/openapi.json"
probe_build_batch "$layout"
quick=(--stop-grace 1)

# The probes below must reach the container through its own loopback. With nothing listening on
# these ports on the host, a probe that succeeds cannot have gone anywhere else.
host_free=1
host_port_free 8080 || host_free=0
host_port_free 6379 || host_free=0
# A decoy on the host's loopback at a port the site links to: if a probe escaped the container's
# network namespace, the decoy would log it.
decoy=1
start_decoy || decoy=0

step "web site, default flags: GET / then a bounded crawl of links and assets"
out="$tmp/web/trace.json"
mkdir -p "$tmp/web"
trace_ok "$out" "oci:$layout:web" "${quick[@]}"
p=$(probes_of "$out")
jq_is "$p" .schema '"slimtrace.probes/v1"' "probes schema"
jq_is "$p" .schema_version 1 "probes schema version"
jq_is "$p" .continue_after '"probe"' "default continue-after for an image with ports"
jq_is "$p" .ready true "readiness"
jq_is "$p" .ports '[8080]' "ports probed"
jq_is "$p" '[.results[] | select(.kind == "http" and .path == "/" and .method == "GET") | .status]' '[200]' \
  "GET / on 8080"
no_probe_failures "$p"
for page in /about.html /assets/app.css /assets/logo.png /deep/1.html; do
  jq_is "$p" "[.results[] | select(.origin == \"crawl\" and .path == \"$page\") | .status]" '[200]' \
    "crawl of $page"
done
for f in /www/index.html /www/about.html /www/assets/app.css /www/assets/logo.png; do
  trace_opened "$out" "$f"
done
# Only same-origin links: no request for the other hosts, mailto: or protocol-relative links.
jq_is "$p" '[.results[] | select((.target // "") | test("invalid|mailto"))] | length' 0 \
  "requests to another origin"
jq_is "$p" '[.results[] | select(.kind == "http" or .kind == "https") | .target |
  select(startswith("http://127.0.0.1:8080/") | not)] | length' 0 "requests outside 127.0.0.1:8080"
# The default crawl is bounded: the chain /deep/1 -> 2 -> ... -> 8 is not followed to its end.
jq_is "$p" '[.results[] | select(.path == "/deep/8.html")] | length' 0 "crawl depth bound (default)"
trace_not_opened "$out" /www/deep/8.html
grep -q 'slimtrace: probes:' "$tmp/err" || fail "no probe summary on stderr: $(cat "$tmp/err")"

step "TCP service that does not speak HTTP, default flags: a tcp result, not a failure"
out="$tmp/tcp/trace.json"
mkdir -p "$tmp/tcp"
trace_ok "$out" "oci:$layout:tcp" "${quick[@]}"
p=$(probes_of "$out")
jq_is "$p" .continue_after '"probe"' "default continue-after for the tcp image"
jq_is "$p" .ports '[6379]' "ports probed"
jq_is "$p" '[.results[] | select(.kind == "tcp" and .port == 6379) | .met]' '[true]' "tcp result for 6379"
jq_is "$p" '[.results[] | select(.kind == "http" or .kind == "https")] | length' 0 \
  "HTTP results for a non-HTTP port"
no_probe_failures "$p"
jq_is "$p" '.error // null' null "probe error"
# The probe's connection was really served: nc ran the echo handler for it.
jq_is "$out" '[.execs[] | select(.path == "/bin/cat")] | length > 0' true "a connection handled by nc -e cat"

step "HTTP API, default flags: GET / only (no spec given)"
out="$tmp/api/trace.json"
mkdir -p "$tmp/api"
trace_ok "$out" "oci:$layout:api" "${quick[@]}"
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.kind == "http" and .path == "/") | .status]' '[200]' "GET / on the API"
no_probe_failures "$p"
trace_opened "$out" /app/data/root.json
trace_not_opened "$out" /app/data/items/1.json

step "HTTP API with --http-probe-apispec: every GET operation, path parameters filled"
require_flags --http-probe-apispec
out="$tmp/api-spec/trace.json"
mkdir -p "$tmp/api-spec"
trace_ok "$out" "oci:$layout:api" "${quick[@]}" --http-probe-apispec "$tmp/openapi.json"
p=$(probes_of "$out")
for path in /api/items /api/items/1 /api/health; do
  jq_is "$p" "[.results[] | select(.origin == \"apispec\" and .path == \"$path\") | [.method, .status]]" \
    '[["GET",200]]' "spec operation GET $path"
done
# Only GET operations are called: the spec's POST and DELETE would change the app's state.
jq_is "$p" '[.results[] | select(.origin == "apispec" and .method != "GET")] | length' 0 \
  "non-GET operations called from the spec"
jq_is "$p" '[.results[] | select(.path | test("[{}]"))] | length' 0 "unfilled path parameters"
no_probe_failures "$p"
for f in /app/data/items.json /app/data/items/1.json /app/data/health.json; do trace_opened "$out" "$f"; done

step "batch job without ports, default flags: it runs to completion"
out="$tmp/batch/trace.json"
mkdir -p "$tmp/batch"
trace_ok "$out" "oci:$layout:batch" "${quick[@]}"
p=$(probes_of "$out")
jq_is "$p" .continue_after '"exit"' "default continue-after for an image without ports"
jq_is "$p" .container_exit_code 0 "container exit code in the probes"
jq_is "$out" .exit_code 0 "exit code in the trace"
jq_is "$p" .ports '[]' "ports of a batch job"
jq_is "$p" '.error // null' null "probe error"
jq_is "$p" '.results | length' 0 "probes against a batch job"
[[ $(cat "$out.stdout.log") == "batch processed 3 lines" ]] || fail "batch output: $(cat "$out.stdout.log")"
want="sha256:$(sha256sum <"$out.stdout.log" | cut -d' ' -f1)"
jq_is "$p" .container_stdout_digest "\"$want\"" "digest of the batch job's stdout"
trace_opened "$out" /data/input.txt

if ((decoy)); then
  step "no probe leaves the container's network namespace (decoy on the host's 127.0.0.1:$PROBE_DECOY_PORT)"
  require_flags --http-probe --probe-cmd
  out="$tmp/leak/trace.json"
  mkdir -p "$tmp/leak"
  run_trace "$out" "oci:$layout:web" "${quick[@]}" --http-probe "GET :$PROBE_DECOY_PORT/leak-from-probe.html" \
    --probe-cmd "wget -q -T 3 -O- http://127.0.0.1:$PROBE_DECOY_PORT/leak-from-probe-cmd.html"
  [[ $rc -eq 5 ]] || { cat "$tmp/err" >&2; fail "probes of a port only the host listens on exited $rc, expected 5"; }
  p=$(probes_of "$out")
  jq_is "$p" "[.results[] | select(.port == $PROBE_DECOY_PORT) | .met]" '[false]' "the probe of the host-only port"
  jq_is "$p" '[.results[] | select(.kind == "host-cmd") | .met]' '[false]' "the host command to the host-only port"
  if grep -q leak "$tmp/decoy.log"; then
    cat "$tmp/decoy.log" >&2
    fail "a probe reached the host's 127.0.0.1:$PROBE_DECOY_PORT"
  fi
fi

if ((host_free)); then
  # Still nothing on the host's ports: every probe above was answered inside the container.
  if ! { host_port_free 8080 && host_port_free 6379; }; then
    fail "a host listener appeared on 8080 or 6379 during the test"
  fi
fi
echo OK
