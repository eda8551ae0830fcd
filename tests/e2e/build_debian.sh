#!/usr/bin/env bash
# `slimtrace build` with default flags on realistic fat Debian images (debootstrap minbase bookworm
# plus Debian packages, tests/e2e/lib/debian_fixtures.bash): an nginx site, a Python app whose
# routes import modules lazily, a batch job with no ports, and redis. For each: the build passes
# its own verification, the output is a small fraction of the input, a Docker engine loads and
# runs it under its own seccomp profile, runc runs it under that profile, and a scanner-style
# reading of the output finds the OS and exactly the packages that still have files.
# Usage: build_debian.sh PATH-TO-SLIMTRACE [KIND...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"
source "$here/lib/debian_fixtures.bash"
source "$here/lib/dockerd.bash"
slimtrace=$(realpath "$1")
shift
kinds=("$@")
((${#kinds[@]})) || kinds=(web pyapp batch service)

require_root
require_tools umoci skopeo jq debootstrap runc nsenter ip sha256sum
[[ -d /sys/fs/bpf ]] || skip "BPF is unavailable (/sys/fs/bpf missing)"
tmp=$(mktemp -d /tmp/slimtrace-e2e-debian.XXXXXX)
DOCKERD_ROOT=$tmp/docker
containers=()
images=()
cleanup() {
  local rc=$? c
  for c in "${containers[@]}"; do runc delete -f "$c" >/dev/null 2>&1 || true; done
  for c in "${images[@]}"; do "$DOCKER" -H "$DOCKER_SOCK" rm -f "$c" >/dev/null 2>&1 || true; done
  for c in "${images[@]}"; do "$DOCKER" -H "$DOCKER_SOCK" rmi -f "$c:latest" >/dev/null 2>&1 || true; done
  dockerd_stop
  rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp" || true; }
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "fixture images (cached under ${SLIMTRACE_CACHE_DIR:-/var/cache/slimtrace})"
for k in "${kinds[@]}"; do debian_image "$k" "$tmp/$k"; done
dockerd_start
docker_caps='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]'
# What the app answers on PORT inside the network namespace of PID: the HTTP status line.
http_status() {
  local pid=$1 port=$2 path=${3:-/}
  nsenter -t "$pid" -n timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET $path HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && head -n 1 <&3" |
    tr -d '\r'
}
redis_ping() {
  nsenter -t "$1" -n timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\nQUIT\r\n" >&3 && head -n 1 <&3' |
    tr -d '\r'
}
# Checks the running app of KIND inside the network namespace of PID.
check_serving() {
  local kind=$1 pid=$2 where=$3 i got=
  for i in $(seq 1 50); do
    case $kind in
    web) got=$(http_status "$pid" 80 / 2>/dev/null || true) ;;
    pyapp) got=$(http_status "$pid" 8000 /db 2>/dev/null || true) ;;
    service) got=$(redis_ping "$pid" 2>/dev/null || true) ;;
    esac
    [[ $got == *"200"* || $got == "+PONG" ]] && return 0
    sleep 0.2
  done
  fail "$kind under $where: no answer (last: '$got')"
}

for k in "${kinds[@]}"; do
  step "$k: slimtrace build with default flags"
  mapfile -t flags < <(debian_image_flags "$k")
  out="$tmp/$k.slim"
  set +e
  "$slimtrace" build "oci:$tmp/$k:latest" "${flags[@]}" --report "$tmp/$k.report.json" 2>"$tmp/$k.err"
  rc=$?
  set -e
  if [[ $rc -eq 4 ]]; then skip "runtime or tracer unavailable: $(head -n 3 "$tmp/$k.err")"; fi
  [[ $rc -eq 0 ]] || { cat "$tmp/$k.err" >&2; fail "$k: build exited $rc"; }
  r="$tmp/$k.report.json"
  profile="$tmp/$k.slim.seccomp.json"
  [[ $(jq -c '[.outcome, .verification.passed, .verification.under_seccomp_profile]' "$r") == '["ok",true,true]' ]] ||
    fail "$k: not verified under its profile: $(jq -c .verification "$r")"
  in_bytes=$(jq .input.uncompressed_bytes "$r")
  out_bytes=$(jq .output.uncompressed_bytes "$r")
  echo "$k: $in_bytes -> $out_bytes bytes uncompressed, $(jq .seccomp.allowed_count "$r") syscalls"
  ((out_bytes * 4 < in_bytes)) || fail "$k: output $out_bytes is not a small fraction of $in_bytes"
  "$slimtrace" validate "oci:$out:latest" >/dev/null || fail "$k: the output does not validate"
  if ((${#flags[@]})); then
    # The extra probe only makes verification sharper; the image name alone must be enough too.
    "$slimtrace" -q build "oci:$tmp/$k:latest" -o "oci:$tmp/$k.noflags" --report "$tmp/$k.noflags.json" ||
      fail "$k: build with no flags at all exited $?"
    [[ $(jq -c '[.outcome, .verification.passed]' "$tmp/$k.noflags.json") == '["ok",true]' ]] ||
      fail "$k: not verified with no flags: $(jq -c .verification "$tmp/$k.noflags.json")"
  fi

  step "$k: a scanner reads the OS and the kept packages"
  umoci unpack --image "$out:latest" "$tmp/$k.bundle" >/dev/null
  root="$tmp/$k.bundle/rootfs"
  grep -q '^ID=debian$' "$root/etc/os-release" || fail "$k: /etc/os-release does not say debian"
  grep -q '^VERSION_ID="12"$' "$root/etc/os-release" || fail "$k: /etc/os-release has no VERSION_ID 12"
  status="$root/var/lib/dpkg/status"
  [[ -s $status ]] || fail "$k: no dpkg status in the output"
  awk '/^Package: /{p=$2} /^Status: install ok installed/{print p}' "$status" | sort >"$tmp/$k.pkgs"
  case $k in
  web) want=(nginx nginx-common libc6) ;; # nginx-light is a metapackage with no files of its own
  pyapp) want=(python3.11-minimal libc6) ;;
  batch) want=(jq libjq1) ;;
  service) want=(redis-server redis-tools) ;;
  esac
  for p in "${want[@]}"; do grep -qx "$p" "$tmp/$k.pkgs" || fail "$k: package $p missing from the pruned status"; done
  grep -qx apt "$tmp/$k.pkgs" && fail "$k: apt is listed although none of its files is kept"
  # Every package listed owns at least one file that is really there, and every file its list
  # names exists: what syft or trivy would read is true.
  while read -r p; do
    list=
    for cand in "$root/var/lib/dpkg/info/$p.list" "$root/var/lib/dpkg/info/$p":*.list; do
      if [[ -f $cand ]]; then list=$cand; break; fi
    done
    [[ -n $list ]] || fail "$k: package $p has no file list"
    have=0
    while read -r f; do
      [[ $f == /. ]] && continue
      [[ -e $root$f || -L $root$f ]] || fail "$k: $p lists $f, which is not in the image"
      [[ -d $root$f && ! -L $root$f ]] || have=1
    done <"$list"
    ((have)) || fail "$k: $p is listed but owns no kept file"
  done <"$tmp/$k.pkgs"

  step "$k: runs under runc with its own seccomp profile"
  b="$tmp/$k.bundle"
  # umoci's config grants 3 capabilities; the image ran (and is meant to run) with a container
  # engine's usual set, as under Docker: nginx chowns its temp dirs at start.
  jq --slurpfile p "$profile" --argjson caps "$docker_caps" \
    '.process.terminal = false | .linux.seccomp = $p[0]
     | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps}' \
    "$b/config.json" >"$b/c.json"
  mv "$b/c.json" "$b/config.json"
  cid="slimtrace-e2e-deb-$k-$$"
  containers+=("$cid")
  if [[ $k == batch ]]; then
    (cd "$b" && timeout 60 runc run "$cid" >"$tmp/$k.runc.out" 2>"$tmp/$k.runc.err") ||
      { cat "$tmp/$k.runc.err" >&2; fail "$k: the batch job failed under runc"; }
    [[ sha256:$(sha256sum <"$tmp/$k.runc.out" | cut -d' ' -f1) == $(jq -r .probes.original.container_stdout_digest "$r") ]] ||
      fail "$k: under runc it printed something else than the original"
  else
    (cd "$b" && runc run -d "$cid" >"$tmp/$k.runc.out" 2>"$tmp/$k.runc.err" </dev/null) ||
      { cat "$tmp/$k.runc.err" >&2; fail "$k: did not start under runc"; }
    pid=$(runc state "$cid" | jq .pid)
    [[ $pid -gt 0 ]] || fail "$k: not running under runc: $(runc state "$cid" | jq -c '{status, pid}') $(tail -n 5 "$tmp/$k.runc.err" "$tmp/$k.runc.out")"
    nsenter -t "$pid" -n ip link set lo up ||
      fail "$k: exited under runc: $(tail -n 5 "$tmp/$k.runc.err" "$tmp/$k.runc.out")"
    check_serving "$k" "$pid" runc
    runc kill "$cid" KILL >/dev/null 2>&1 || true
  fi
  runc delete -f "$cid" >/dev/null 2>&1 || true

  step "$k: a Docker engine loads it and runs it with --security-opt seccomp="
  name="slimtrace-e2e-deb-$k-$$"
  images+=("$name")
  skopeo copy -q "oci:$out:latest" "docker-archive:$tmp/$k.docker.tar:$name:latest"
  "$DOCKER" -H "$DOCKER_SOCK" load -i "$tmp/$k.docker.tar" >/dev/null
  if [[ $k == batch ]]; then
    "$DOCKER" -H "$DOCKER_SOCK" run --name "$name" --network none --security-opt "seccomp=$profile" \
      "$name:latest" >"$tmp/$k.docker.out" 2>"$tmp/$k.docker.err" ||
      { cat "$tmp/$k.docker.err" >&2; fail "$k: the batch job failed in Docker"; }
    [[ sha256:$(sha256sum <"$tmp/$k.docker.out" | cut -d' ' -f1) == $(jq -r .probes.original.container_stdout_digest "$r") ]] ||
      fail "$k: in Docker it printed something else than the original"
  else
    "$DOCKER" -H "$DOCKER_SOCK" run -d --name "$name" --network none --security-opt "seccomp=$profile" \
      "$name:latest" >/dev/null
    pid=$("$DOCKER" -H "$DOCKER_SOCK" inspect -f '{{.State.Pid}}' "$name")
    [[ $pid -gt 0 ]] || fail "$k: not running in Docker: $("$DOCKER" -H "$DOCKER_SOCK" logs "$name" 2>&1 | tail -n 5)"
    check_serving "$k" "$pid" Docker
  fi
  "$DOCKER" -H "$DOCKER_SOCK" rm -f "$name" >/dev/null
done
echo "PASS (${SECONDS}s)"
