#!/usr/bin/env bash
# Installs everything slimtrace needs to build, test and benchmark, from Debian's archive only.
# Idempotent and quiet on success: prints nothing when all packages are already present.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang llvm lld libclang-rt-14-dev
  clang-format clang-tidy
  # libraries
  libarchive-dev libzstd-dev zlib1g-dev libisal-dev libssl-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev googletest
  libbpf-dev libelf-dev libseccomp-dev bpftool linux-libc-dev
  # running
  runc crun iproute2 util-linux
)
# Test fixtures, interop checks and benchmarks. `--runtime-only` leaves them out: what a CI host
# that only builds and runs slimtrace needs (it may have its own Docker engine, which Debian's
# docker.io would conflict with).
test_packages=(
  busybox-static debootstrap e2fsprogs
  umoci skopeo docker.io docker-registry wrk jq python3 zstd pigz openssl
)
case "${1:-}" in
  --runtime-only) ;;
  "") packages+=("${test_packages[@]}") ;;
  *)
    echo "usage: $0 [--runtime-only]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: need root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "setup: apt-get install failed for: ${missing[*]}" >&2
  exit 1
fi
