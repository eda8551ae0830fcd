# A Docker engine for e2e tests (sourced): the running one when there is one, otherwise Debian's
# dockerd started with its own data root, exec root and socket under DOCKERD_ROOT, no bridge and no
# iptables (nothing on the host changes), and stopped again by dockerd_stop.
#
#   DOCKERD_ROOT=$tmp/docker; dockerd_start   sets DOCKER (client) and DOCKER_SOCK; skips if impossible
#   dockerd_stop                              stops it and unmounts what it left (no-op for a running one)

DOCKER=/usr/bin/docker  # Debian's client, matching Debian's dockerd; a newer one may be earlier in PATH
DOCKER_SOCK=
DOCKERD_PID=

dockerd_start() {
  [[ -x $DOCKER ]] || DOCKER=$(command -v docker) || skip "no docker client installed"
  DOCKER_SOCK=unix:///var/run/docker.sock
  if "$DOCKER" -H "$DOCKER_SOCK" info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null 2>&1 || skip "dockerd is not installed (Debian package docker.io)"
  local root=${DOCKERD_ROOT:?set DOCKERD_ROOT} driver started=
  mkdir -p "$root/data" "$root/exec"
  echo '{}' >"$root/daemon.json"
  DOCKER_SOCK=unix://$root/docker.sock
  # SLIMTRACE_DOCKER_DRIVERS overrides the order, e.g. "vfs" where overlay mounts are refused.
  for driver in ${SLIMTRACE_DOCKER_DRIVERS:-overlay2 vfs}; do
    dockerd --config-file "$root/daemon.json" --data-root "$root/data" --exec-root "$root/exec" \
      --pidfile "$root/docker.pid" -H "$DOCKER_SOCK" --bridge=none --iptables=false --ip-masq=false \
      --userland-proxy=false --storage-driver="$driver" >"$root/dockerd-$driver.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 300); do
      if "$DOCKER" -H "$DOCKER_SOCK" info >/dev/null 2>&1; then started=$driver; break; fi
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.1
    done
    [[ -n $started ]] && break
    echo "dockerd with $driver did not come up; log tail:"
    tail -n 5 "$root/dockerd-$driver.log" || true
    dockerd_stop
    rm -rf "$root/data" "$root/exec"
    mkdir -p "$root/data" "$root/exec"
  done
  [[ -n $started ]] || fail "could not start dockerd (logs above)"
  echo "started dockerd (storage driver $started) on $DOCKER_SOCK"
}

dockerd_stop() {
  [[ -n $DOCKERD_PID ]] || return 0
  local root=${DOCKERD_ROOT:?} cpid
  kill -TERM "$DOCKERD_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  # The containerd that dockerd started for itself normally exits with it; make sure.
  cpid=$(cat "$root/exec/containerd/containerd.pid" 2>/dev/null || true)
  if [[ -n $cpid ]] && kill -0 "$cpid" 2>/dev/null; then
    kill -TERM "$cpid" 2>/dev/null || true
    sleep 1
    kill -KILL "$cpid" 2>/dev/null || true
  fi
  DOCKERD_PID=
  # Whatever the daemon mounted under its roots (overlay layers, shm, netns), deepest first.
  awk -v root="$root" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | LC_ALL=C sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
