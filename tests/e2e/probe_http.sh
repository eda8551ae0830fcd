#!/usr/bin/env bash
# Explicit HTTP probe flags against the web and API fixtures: --http-probe, --http-probe-file
# (expectations met and not met), the crawl bounds, --no-crawl, and API specs from a file
# (OpenAPI 3 and Swagger 2) or served by the app.
# Usage: probe_http.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"
source "$here/lib/probe_fixtures.bash"
probe_require_env "$1"

step "building the fixture images"
layout="$tmp/img"
probe_build_web "$layout"
probe_build_api "$layout" "$tmp/openapi.json"
web="oci:$layout:web"
api="oci:$layout:api"
quick=(--stop-grace 1)

# Distinct paths fetched from port 8080 by the default GET / and the crawl.
crawled() { jq -c '[.results[] | select(.origin == "default" or .origin == "crawl") | .path] | unique' "$1"; }
# Distinct files under /www the server opened.
www_opened() {
  jq -c '[.files[] | select((.path | startswith("/www/")) and .found and (.ops | index("open"))) | .path] | unique' "$1"
}

step "--http-probe 'GET /about.html' with --no-crawl"
require_flags --http-probe --no-crawl
out="$tmp/one/trace.json"
mkdir -p "$tmp/one"
trace_ok "$out" "$web" "${quick[@]}" --no-crawl --http-probe 'GET /about.html'
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.origin == "user") | [.kind, .method, .path, .status, .met]]' \
  '[["http","GET","/about.html",200,true]]' "the user's probe"
jq_is "$p" '[.results[] | select(.origin == "crawl")] | length' 0 "crawl results with --no-crawl"
jq_is "$p" '[.results[] | select(.origin == "user") | .body_digest | test("^sha256:[0-9a-f]{64}$")]' '[true]' \
  "body digest of the user's probe"
jq_is "$p" '[.results[] | select(.origin == "user") | .stable]' '[true]' "a static page answers the same twice"
no_probe_failures "$p"
trace_opened "$out" /www/about.html
trace_not_opened "$out" /www/assets/app.css

step "--http-probe-file: methods, headers, bodies and expected statuses"
require_flags --http-probe-file
mkdir -p "$tmp/pf"
printf '{"name":"from a file"}\n' >"$tmp/pf/payload.json"
cat >"$tmp/pf/probes.json" <<'EOF'
[
  {"path": "/api/items", "expect_status": 200},
  {"method": "GET", "path": "/api/items/2", "port": 8080, "headers": {"Accept": "application/json"},
   "expect_status": [200, 203]},
  {"path": "/api/items/404", "expect_status": 404},
  {"method": "POST", "path": "/api/items", "headers": ["Content-Type: application/json"],
   "body_file": "payload.json", "expect_status": 405},
  {"method": "PUT", "path": "/api/items/1", "body": {"name": "x"}, "expect_status": [405]}
]
EOF
out="$tmp/pf/trace.json"
trace_ok "$out" "$api" "${quick[@]}" --http-probe-file "$tmp/pf/probes.json"
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.origin == "user") | [.method, .path, .status, .met]] | sort' \
  '[["GET","/api/items",200,true],["GET","/api/items/2",200,true],["GET","/api/items/404",404,true],["POST","/api/items",405,true],["PUT","/api/items/1",405,true]]' \
  "results of the probe file"
no_probe_failures "$p"
trace_opened "$out" /app/data/items/2.json
# The failed lookup of the missing item is in the trace too.
jq_is "$out" '[.files[] | select(.path == "/app/data/items/404.json") | .found]' '[false]' \
  "failed lookup behind the 404"

step "a probe whose expectation is not met: exit 5, met=false, the log tail, results still written"
cat >"$tmp/pf/wrong.json" <<'EOF'
[{"path": "/api/items/404", "expect_status": 200}]
EOF
out="$tmp/pf/wrong/trace.json"
mkdir -p "$tmp/pf/wrong"
run_trace "$out" "$api" "${quick[@]}" --http-probe-file "$tmp/pf/wrong.json"
[[ $rc -eq 5 ]] || { cat "$tmp/err" >&2; fail "an unmet expectation exited $rc, expected 5 (docs/probes.md)"; }
p=$(probes_of "$out")
[[ -s $out && -s $p ]] || fail "trace or probes not written after a failed probe"
jq_is "$p" '[.results[] | select(.origin == "user") | [.path, .status, .met]]' '[["/api/items/404",404,false]]' \
  "the unmet probe"
grep -q '/api/items/404' "$tmp/err" || fail "the failure message does not name the probe: $(cat "$tmp/err")"
# The handler logs every request on stderr; the tail of that log is part of the message.
grep -q 'GET /api/items/404' "$tmp/err" || fail "the failure message has no log tail: $(cat "$tmp/err")"
jq -e '.log_tail | test("GET /api/items/404")' "$p" >/dev/null || fail "no log_tail in $p"

step "a bad probe file is a usage error before the container starts"
printf '[{"path": "/x", "colour": "red"}]\n' >"$tmp/pf/bad.json"
out="$tmp/pf/bad/trace.json"
mkdir -p "$tmp/pf/bad"
run_trace "$out" "$api" "${quick[@]}" --http-probe-file "$tmp/pf/bad.json"
[[ $rc -eq 2 ]] || { cat "$tmp/err" >&2; fail "an unknown field exited $rc, expected 2"; }
grep -q colour "$tmp/err" || fail "the error does not name the field: $(cat "$tmp/err")"
[[ ! -e $out ]] || fail "a trace was written for a usage error"

step "--crawl-max-pages 2: the crawl stops after 2 fetches, / included"
require_flags --crawl-max-pages
out="$tmp/max/trace.json"
mkdir -p "$tmp/max"
trace_ok "$out" "$web" "${quick[@]}" --crawl-max-pages 2
p=$(probes_of "$out")
n=$(crawled "$p" | jq length)
[[ $n -eq 2 ]] || fail "--crawl-max-pages 2 fetched $(crawled "$p")"
n=$(www_opened "$out" | jq length)
[[ $n -eq 2 ]] || fail "--crawl-max-pages 2: the server opened $(www_opened "$out")"
no_probe_failures "$p"

step "--crawl-depth 1: links on / are followed, links on those pages are not"
require_flags --crawl-depth
out="$tmp/depth/trace.json"
mkdir -p "$tmp/depth"
trace_ok "$out" "$web" "${quick[@]}" --crawl-depth 1
p=$(probes_of "$out")
for page in /about.html /assets/app.css /deep/1.html; do
  crawled "$p" | jq -e --arg x "$page" 'index($x) != null' >/dev/null || fail "depth 1 did not fetch $page: $(crawled "$p")"
done
for page in /deep/2.html /assets/logo.png; do
  crawled "$p" | jq -e --arg x "$page" 'index($x) == null' >/dev/null || fail "depth 1 fetched $page: $(crawled "$p")"
done
trace_not_opened "$out" /www/deep/2.html
no_probe_failures "$p"

step "--crawl-depth 20 --crawl-max-pages 100: the whole chain, external links still ignored"
out="$tmp/deep/trace.json"
mkdir -p "$tmp/deep"
trace_ok "$out" "$web" "${quick[@]}" --crawl-depth 20 --crawl-max-pages 100
p=$(probes_of "$out")
# deep/9.html does not exist: the last page links to it, so the crawl records one 404.
trace_opened "$out" /www/deep/8.html
jq_is "$p" '[.results[] | select((.target // "") | test("invalid|mailto"))] | length' 0 "requests to another origin"

step "--http-probe-apispec-path /openapi.json: the spec served by the app"
require_flags --http-probe-apispec-path
out="$tmp/served/trace.json"
mkdir -p "$tmp/served"
trace_ok "$out" "$api" "${quick[@]}" --http-probe-apispec-path /openapi.json
p=$(probes_of "$out")
for path in /api/items /api/items/1 /api/health; do
  jq_is "$p" "[.results[] | select(.origin == \"apispec\" and .path == \"$path\") | .status]" '[200]' \
    "served spec operation GET $path"
done
no_probe_failures "$p"
trace_opened "$out" /app/openapi.json
trace_opened "$out" /app/data/items/1.json

step "--http-probe-apispec with a Swagger 2 document (basePath, x-example)"
cat >"$tmp/swagger.json" <<'EOF'
{
  "swagger": "2.0",
  "info": { "title": "items fixture", "version": "1" },
  "basePath": "/api",
  "paths": {
    "/items/{id}": {
      "get": {
        "parameters": [ { "name": "id", "in": "path", "required": true, "type": "integer", "x-example": 2 } ],
        "responses": { "200": { "description": "one item" } }
      }
    }
  }
}
EOF
out="$tmp/swagger/trace.json"
mkdir -p "$tmp/swagger"
trace_ok "$out" "$api" "${quick[@]}" --no-crawl --http-probe-apispec "$tmp/swagger.json"
p=$(probes_of "$out")
jq_is "$p" '[.results[] | select(.origin == "apispec") | [.method, .path, .status]]' '[["GET","/api/items/2",200]]' \
  "Swagger 2 operation"
trace_opened "$out" /app/data/items/2.json
echo OK
