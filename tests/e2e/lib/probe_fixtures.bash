# Fixture images and checks shared by the probe e2e scripts (tests/e2e/probe_*.sh). Sourced after
# common.bash; kept out of the *.sh glob so ctest does not run it.
#
# Every image is a tag in one OCI layout built with umoci from the host's busybox-static:
#   web    busybox httpd on 8080 serving a small site: links, a stylesheet, an image referenced only
#          from CSS url(), a link to another origin, and a chain of pages /deep/1.html -> ... -> 8.
#   tcp    a non-HTTP service on 6379: busybox nc echoing what it receives.
#   api    an HTTP API on 8080 (a shell handler behind `nc -ll -e`): /, /api/items, /api/items/{id},
#          /openapi.json; each route reads its own data file, so the trace shows which were called.
#   batch  no ports: reads /data/input.txt, prints one line and exits 0.

# A port the tests listen on on the host (127.0.0.1) as a decoy: the web site links to it, and a
# probe aimed at it must not reach it, since probes only ever talk to the container's own loopback.
PROBE_DECOY_PORT=18181

# Commands every image gets as busybox links.
PROBE_APPLETS=(sh cat echo ls sleep httpd nc wc printf test hostname env)

# Set by probe_require_env.
slimtrace=
tmp=

# Skips unless the script can run containers; sets $slimtrace (from $1) and $tmp (removed on exit).
probe_require_env() {
  slimtrace=$(realpath "$1")
  require_root
  require_tools umoci jq ss
  [[ -x /bin/busybox ]] || skip "/bin/busybox (busybox-static) is missing"
  command -v runc >/dev/null 2>&1 || command -v crun >/dev/null 2>&1 || skip "no OCI runtime (runc or crun)"
  [[ -d /sys/fs/bpf ]] || skip "BPF is unavailable (/sys/fs/bpf missing)"
  tmp=$(mktemp -d /tmp/slimtrace-e2e-probe.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
}

# Starts a fresh rootfs for tag $2 of layout $1; prints the rootfs path.
_probe_new_rootfs() {
  local layout=$1 tag=$2
  [[ -e "$layout/index.json" ]] || umoci init --layout "$layout" >/dev/null
  umoci new --image "$layout:$tag" >/dev/null
  umoci unpack --image "$layout:$tag" "$layout.$tag.bundle" >/dev/null
  local r="$layout.$tag.bundle/rootfs" a
  mkdir -p "$r"/{bin,etc,tmp,data}
  cp /bin/busybox "$r/bin/busybox"
  for a in "${PROBE_APPLETS[@]}"; do ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\nwww:x:33:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp"
  echo "$r"
}

# Commits the rootfs of tag $2 and sets its config: remaining args are `umoci config` flags.
_probe_commit() {
  local layout=$1 tag=$2
  shift 2
  umoci repack --image "$layout:$tag" "$layout.$tag.bundle" >/dev/null
  umoci config --image "$layout:$tag" "$@" >/dev/null
  rm -rf "$layout.$tag.bundle"
}

probe_build_web() {
  local layout=$1 r i
  r=$(_probe_new_rootfs "$layout" web)
  mkdir -p "$r/www/assets" "$r/www/deep"
  cat >"$r/www/index.html" <<'EOF'
<!doctype html>
<html><head><title>fixture</title><link rel="stylesheet" href="/assets/app.css"></head>
<body>
<h1>probe fixture</h1>
<a href="/about.html">About</a>
<a href="deep/1.html">Deep</a>
<a href="http://external.invalid/offsite.html">Elsewhere</a>
<a href="//cdn.invalid/lib.js">CDN</a>
<a href="mailto:someone@example.invalid">Mail</a>
<a href="http://127.0.0.1:18181/leak-from-crawl.html">Same host, other port</a>
</body></html>
EOF
  cat >"$r/www/about.html" <<'EOF'
<!doctype html>
<html><body><p>About this fixture.</p><a href="/">Home</a></body></html>
EOF
  printf 'body { background: url(/assets/logo.png) no-repeat; }\n' >"$r/www/assets/app.css"
  printf '\x89PNG\r\n\x1a\n-not-really-a-png-\n' >"$r/www/assets/logo.png"
  # A chain deeper and longer than any sane default: page i links only to page i+1.
  for i in 1 2 3 4 5 6 7 8; do
    printf '<!doctype html>\n<html><body><p>page %d</p><a href="%d.html">next</a></body></html>\n' \
      "$i" $((i + 1)) >"$r/www/deep/$i.html"
  done
  printf 'web-fixture\n' >"$r/etc/hostname.fixture"
  _probe_commit "$layout" web --config.entrypoint /bin/httpd --config.cmd=-f --config.cmd=-v \
    --config.cmd=-p --config.cmd=8080 --config.cmd=-h --config.cmd=/www \
    --config.exposedports 8080/tcp --config.workingdir /www
}

probe_build_tcp() {
  local layout=$1 r
  r=$(_probe_new_rootfs "$layout" tcp)
  # Says hello on stderr like a real server, so that a failure's log tail has something to show.
  # nc -ll with -e: a persistent server, one `cat` per connection, so anything sent comes back.
  _probe_commit "$layout" tcp --config.entrypoint /bin/sh --config.cmd=-c \
    --config.cmd='echo "tcp fixture: listening on 6379" >&2; exec nc -ll -p 6379 -e /bin/cat' \
    --config.exposedports 6379/tcp
}

# Also writes the OpenAPI document to $2 on the host (for --http-probe-apispec).
probe_build_api() {
  local layout=$1 spec_out=$2 r
  r=$(_probe_new_rootfs "$layout" api)
  mkdir -p "$r/app/data/items"
  cat >"$r/app/openapi.json" <<'EOF'
{
  "openapi": "3.0.3",
  "info": { "title": "items fixture", "version": "1" },
  "paths": {
    "/api/items": {
      "get": { "operationId": "listItems", "responses": { "200": { "description": "all items" } } },
      "post": { "operationId": "createItem", "responses": { "201": { "description": "created" } } }
    },
    "/api/items/{id}": {
      "parameters": [
        { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" }, "example": 1 }
      ],
      "get": { "operationId": "getItem", "responses": { "200": { "description": "one item" } } },
      "delete": { "operationId": "deleteItem", "responses": { "204": { "description": "deleted" } } }
    },
    "/api/health": {
      "get": { "operationId": "health", "responses": { "200": { "description": "ok" } } }
    }
  }
}
EOF
  cp "$r/app/openapi.json" "$spec_out"
  printf '{"service":"items","spec":"/openapi.json"}\n' >"$r/app/data/root.json"
  printf '[{"id":1,"name":"one"},{"id":2,"name":"two"}]\n' >"$r/app/data/items.json"
  printf '{"id":1,"name":"one"}\n' >"$r/app/data/items/1.json"
  printf '{"id":2,"name":"two"}\n' >"$r/app/data/items/2.json"
  printf '{"ok":true}\n' >"$r/app/data/health.json"
  # One process per request (nc -ll -e): a minimal HTTP/1.0 responder. Only GET is served; any
  # other method gets 405, an unknown path 404.
  cat >"$r/app/handler.sh" <<'EOF'
#!/bin/sh
cr=$(printf '\r')
read -r method target proto
while read -r line; do line=${line%"$cr"}; [ -z "$line" ] && break; done
path=${target%%\?*}
file=
case "$path" in
  /) file=/app/data/root.json ;;
  /openapi.json) file=/app/openapi.json ;;
  /api/items) file=/app/data/items.json ;;
  /api/health) file=/app/data/health.json ;;
  /api/items/*) file=/app/data/items/${path#/api/items/}.json ;;
esac
reply() {
  printf 'HTTP/1.0 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$1" "${#2}" "$2"
}
if [ "$method" != GET ] && [ "$method" != HEAD ]; then
  reply '405 Method Not Allowed' '{"error":"method"}'
elif [ -n "$file" ] && [ -f "$file" ]; then
  reply '200 OK' "$(cat "$file")"
else
  reply '404 Not Found' '{"error":"not found"}'
fi
echo "$method $target" >&2
EOF
  chmod 0755 "$r/app/handler.sh"
  _probe_commit "$layout" api --config.entrypoint /bin/nc --config.cmd=-ll --config.cmd=-p \
    --config.cmd=8080 --config.cmd=-e --config.cmd=/app/handler.sh --config.exposedports 8080/tcp \
    --config.workingdir /app
}

probe_build_batch() {
  local layout=$1 r
  r=$(_probe_new_rootfs "$layout" batch)
  printf 'alpha\nbeta\ngamma\n' >"$r/data/input.txt"
  # shellcheck disable=SC2016 # expanded by the container's shell
  _probe_commit "$layout" batch --config.entrypoint /bin/sh --config.cmd=-c \
    --config.cmd='echo "batch processed $(wc -l < /data/input.txt) lines"'
}

# ---------------------------------------------------------------------------------------------
# Running and checking.

# The probes file slimtrace writes next to trace $1.
probes_of() { echo "${1%.json}.probes.json"; }

# Fails naming the flags that `slimtrace trace --help` does not list (the feature is missing, which
# is a failure, not a reason to skip).
require_flags() {
  local f missing=()
  "$slimtrace" trace --help >"$tmp/help.txt" 2>&1 || true
  for f in "$@"; do grep -q -- "$f" "$tmp/help.txt" || missing+=("$f"); done
  ((${#missing[@]} == 0)) || fail "slimtrace trace does not accept ${missing[*]} (flag missing)"
}

# run_trace OUT IMAGE [ARGS...]: runs `slimtrace trace IMAGE -o OUT ARGS...`, stderr to $tmp/err,
# and stores the exit code in $rc. Skips when the runtime or the tracer is unavailable (exit 4,
# as trace_cli.sh does).
rc=0
run_trace() {
  local out=$1 image=$2
  shift 2
  set +e
  "$slimtrace" trace "$image" -o "$out" "$@" 2>"$tmp/err" >"$tmp/out"
  rc=$?
  set -e
  if [[ $rc -eq 4 ]]; then skip "runtime or tracer unavailable: $(head -n 3 "$tmp/err")"; fi
}

# trace_ok OUT IMAGE [ARGS...]: run_trace, then fails unless it succeeded and wrote the trace and
# its probes file.
trace_ok() {
  local out=$1
  run_trace "$@"
  [[ $rc -eq 0 ]] || { cat "$tmp/err" >&2; fail "slimtrace trace ${*:2} exited $rc"; }
  [[ -s $out ]] || fail "no trace written at $out"
  [[ -s $(probes_of "$out") ]] || fail "no probes file written at $(probes_of "$out")"
}

# jq over a file with a readable failure: jq_is FILE FILTER EXPECTED WHAT
jq_is() {
  local got
  got=$(jq -c "$2" "$1") || fail "jq '$2' on $1 failed"
  [[ $got == "$3" ]] || fail "$4: '$2' is $got, expected $3 (in $1)"
}

# Fails unless trace $1 records path $2 as found and opened.
trace_opened() {
  local n
  n=$(jq --arg p "$2" '[.files[] | select(.path == $p and .found and (.ops | index("open")))] | length' "$1")
  [[ $n -ge 1 ]] || fail "$2 not recorded as opened in $1 ($(jq -c --arg p "$2" '[.files[] | select(.path == $p)]' "$1"))"
}

# Fails when trace $1 records path $2 as opened.
trace_not_opened() {
  local n
  n=$(jq --arg p "$2" '[.files[] | select(.path == $p and .found and (.ops | index("open")))] | length' "$1")
  [[ $n -eq 0 ]] || fail "$2 recorded as opened in $1 but should not have been"
}

# Fails unless probes file $1 has no result with an error or an unmet expectation.
no_probe_failures() {
  local bad
  bad=$(jq -c '[.results[] | select((.error // null) != null or .met == false)]' "$1")
  [[ $bad == "[]" ]] || fail "probe failures in $1: $bad"
}

# Starts a decoy web server on the host at 127.0.0.1:$PROBE_DECOY_PORT logging every request to
# $tmp/decoy.log; returns 1 (with a note) when the port is taken.
decoy_pid=
start_decoy() {
  host_port_free "$PROBE_DECOY_PORT" || return 1
  mkdir -p "$tmp/decoy"
  echo 'host decoy' >"$tmp/decoy/index.html"
  /bin/busybox httpd -f -vv -p "127.0.0.1:$PROBE_DECOY_PORT" -h "$tmp/decoy" 2>"$tmp/decoy.log" &
  decoy_pid=$!
  trap 'kill "$decoy_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
  local i
  for ((i = 0; i < 50; i++)); do
    ss -Hltn "sport = :$PROBE_DECOY_PORT" | grep -q . && return 0
    sleep 0.1
  done
  fail "the decoy server on 127.0.0.1:$PROBE_DECOY_PORT did not start"
}

# Prints a note and returns 1 when something on the host listens on TCP port $1: the probes must
# reach the container's own loopback, and with a listener on the host's "the probe worked" would
# not show that.
host_port_free() {
  if ss -Hltn "sport = :$1" | grep -q .; then
    echo "note: port $1 is in use on the host; the no-host-traffic check is weaker" >&2
    return 1
  fi
}
