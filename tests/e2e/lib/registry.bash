# shellcheck disable=SC2034 # REG_*, FLAKY_* and TOKEN_PORT are read by the sourcing script
# OCI distribution registries for e2e tests (sourced): Debian's docker-registry on 127.0.0.1 at a
# free port, each with its own config and filesystem storage under REGISTRY_ROOT, in one of three
# auth modes. Everything started here is stopped by registry_stop_all (call it from the EXIT trap).
#
#   REGISTRY_ROOT=$tmp/reg
#   registry_start NAME anon                 -> sets REG_PORT, REG_HOST (127.0.0.1:PORT), REG_STORAGE
#   registry_start NAME basic USER PASS      -> htpasswd basic auth
#   registry_start NAME token USER PASS      -> bearer tokens from a token service of ours
#   registry_flaky_proxy UPSTREAM_PORT       -> FLAKY_HOST, FLAKY_LOG: fails the first request of
#                                               each kind with 503/429 (registry_flaky_proxy.py)
#   registry_stop_all
#
# The htpasswd entry is bcrypt (the only hash docker-registry accepts). apache2-utils' htpasswd
# is not installed and python3's crypt module is deprecated, so the hash comes from perl's crypt(),
# which is libcrypt's (libxcrypt on Debian) and does "$2y$" bcrypt; perl-base is Essential.
#
# The token service (registry_token_server.py, stdlib only) checks basic credentials and signs RS256
# JWTs with the openssl CLI; its key's self-signed certificate is both the registry's rootcertbundle
# and the token's x5c chain, which is how docker-registry finds the signing key.

REGISTRY_PIDS=()
REG_PORT=
REG_HOST=
REG_STORAGE=

# A TCP port nothing listens on now (the kernel's pick; a race with another process is unlikely).
registry_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

registry_wait_port() {
  local port=$1 pid=$2 log=$3
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2 || true
      fail "server for port $port exited early (log above)"
    fi
    sleep 0.05
  done
  tail -n 20 "$log" >&2 || true
  fail "nothing listens on 127.0.0.1:$port after 10 s"
}

registry_bcrypt() {
  local pass=$1 salt
  # 22 characters of bcrypt's base64 alphabet.
  salt=$(head -c 64 /dev/urandom | base64 -w0 | tr -dc './A-Za-z0-9' | head -c 22)
  PASS=$pass SALT=$salt perl -e 'print crypt($ENV{PASS}, "\$2y\$05\$" . $ENV{SALT})'
}

registry_start_token_server() {
  local dir=$1 user=$2 pass=$3 port
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/token.key" -out "$dir/token.crt" -days 2 \
    -subj "/CN=slimtrace-test-token" >/dev/null 2>&1 || fail "openssl could not make the token key"
  port=$(registry_free_port)
  python3 "$(dirname "${BASH_SOURCE[0]}")/registry_token_server.py" --port "$port" --key "$dir/token.key" \
    --cert "$dir/token.crt" --user "$user" --password "$pass" --issuer slimtrace-test-issuer \
    --service slimtrace-test-registry >"$dir/token.log" 2>&1 &
  REGISTRY_PIDS+=($!)
  registry_wait_port "$port" "$!" "$dir/token.log"
  TOKEN_PORT=$port
}

registry_start() {
  local name=$1 mode=$2 user=${3:-} pass=${4:-}
  local dir=${REGISTRY_ROOT:?set REGISTRY_ROOT}/$name port auth=
  mkdir -p "$dir/storage"
  port=$(registry_free_port)
  case $mode in
    anon) ;;
    basic)
      printf '%s:%s\n' "$user" "$(registry_bcrypt "$pass")" >"$dir/htpasswd"
      auth=$(printf 'auth:\n  htpasswd:\n    realm: slimtrace-test\n    path: %s\n' "$dir/htpasswd")
      ;;
    token)
      registry_start_token_server "$dir" "$user" "$pass"
      auth=$(printf 'auth:\n  token:\n    realm: http://127.0.0.1:%s/token\n    service: slimtrace-test-registry\n    issuer: slimtrace-test-issuer\n    rootcertbundle: %s\n' \
        "$TOKEN_PORT" "$dir/token.crt")
      ;;
    *) fail "registry_start: unknown mode '$mode'" ;;
  esac
  # No blob descriptor cache: tests corrupt blobs under the registry's feet and want it to serve
  # what is on disk.
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
EOF
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PIDS+=($!)
  registry_wait_port "$port" "$!" "$dir/registry.log"
  REG_PORT=$port
  REG_HOST=127.0.0.1:$port
  REG_STORAGE=$dir/storage
  REG_LOG=$dir/registry.log
}

registry_flaky_proxy() {
  local upstream=$1 port dir=${REGISTRY_ROOT:?}
  mkdir -p "$dir"
  port=$(registry_free_port)
  FLAKY_LOG=$dir/flaky-$port.log
  python3 "$(dirname "${BASH_SOURCE[0]}")/registry_flaky_proxy.py" --port "$port" --upstream-port "$upstream" \
    >"$FLAKY_LOG" 2>&1 &
  REGISTRY_PIDS+=($!)
  registry_wait_port "$port" "$!" "$FLAKY_LOG"
  FLAKY_HOST=127.0.0.1:$port
}

registry_stop_all() {
  local pid
  for pid in "${REGISTRY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${REGISTRY_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  REGISTRY_PIDS=()
}

# The path of blob DIGEST's content in a registry's filesystem storage.
registry_blob_data() {
  local storage=$1 hex=${2#sha256:}
  echo "$storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
}
