#!/usr/bin/env bash
# The main job on the bundled example: installs dependencies, builds slimtrace (release preset),
# makes the example image (examples/make-example-image.sh, cached), x-rays it, minifies it with
# `slimtrace build` (default flags: the web server is probed, crawled, verified) and x-rays the
# result. Arguments are passed to `slimtrace build`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target slimtrace -j "$(nproc 2>/dev/null || echo 2)"
bash examples/make-example-image.sh build/example/image
slimtrace=build/release/cli/slimtrace
run() {
  echo
  echo "\$ slimtrace $*"
  "$slimtrace" "$@"
}
run xray --top 5 oci:build/example/image:latest
# --stop-grace 2: busybox httpd as PID 1 ignores SIGTERM, so it would otherwise wait the full 10 s twice.
run build oci:build/example/image:latest -o oci:build/example/image.slim:latest \
  --report build/example/slimtrace.report.json --stop-grace 2 "$@"
run xray --top 5 oci:build/example/image.slim:latest
echo
echo "minified image: oci:build/example/image.slim:latest"
echo "seccomp profile: build/example/image.slim.seccomp.json"
echo "report: build/example/slimtrace.report.json"
