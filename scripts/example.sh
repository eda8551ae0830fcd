#!/usr/bin/env bash
# The main job on the bundled example: installs dependencies, builds slimtrace (release preset),
# makes the example image (examples/make-example-image.sh, cached) and x-rays it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target slimtrace -j "$(nproc 2>/dev/null || echo 2)"
bash examples/make-example-image.sh build/example/image
echo
echo "\$ slimtrace xray oci:build/example/image:latest"
exec build/release/cli/slimtrace xray oci:build/example/image:latest "$@"
