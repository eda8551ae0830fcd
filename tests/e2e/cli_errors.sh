#!/usr/bin/env bash
# The one-line errors and exit codes users meet: unknown references, directories that are not
# images, ambiguous multi-image archives and how to pick from them, corrupted blobs, --help.
#
# Usage: bash tests/e2e/cli_errors.sh PATH-TO-SLIMTRACE   (exit 77: skipped, with the reason printed)
set -euo pipefail

SLIMTRACE=${1:?usage: cli_errors.sh PATH-TO-SLIMTRACE}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib/common.bash
source "$HERE/lib/common.bash"

require_tools umoci skopeo jq tar
[[ -x $SLIMTRACE ]] || fail "slimtrace binary '$SLIMTRACE' not found"
SLIMTRACE=$(realpath "$SLIMTRACE")

T=$(mktemp -d /tmp/slimtrace-cli-errors.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
FAILED=0

# expect_error RC REGEX... -- ARGS...: slimtrace ARGS exits with RC and prints exactly one line on
# stderr, "slimtrace: ...", matching every REGEX (extended, case-sensitive).
expect_error() {
  local want=$1
  shift
  local -a pats=()
  while [[ $1 != -- ]]; do pats+=("$1"); shift; done
  shift
  local rc=0
  "$SLIMTRACE" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
  local lines
  lines=$(wc -l <"$T/err")
  local why=
  [[ $rc -eq $want ]] || why="exit code $rc, want $want"
  [[ -z $why && $lines -ne 1 ]] && why="$lines lines on stderr, want 1"
  [[ -z $why ]] && ! grep -q '^slimtrace: ' "$T/err" && why="stderr does not start with 'slimtrace: '"
  local p
  for p in "${pats[@]}"; do
    [[ -z $why ]] && ! grep -Eq -- "$p" "$T/err" && why="stderr does not match /$p/"
  done
  if [[ -n $why ]]; then
    echo "not ok: slimtrace $* => $why; stderr was:" >&2
    sed 's/^/    /' "$T/err" >&2
    FAILED=1
  else
    echo "ok: slimtrace $* => $rc: $(cat "$T/err")"
  fi
}

# expect_ok ARGS...: slimtrace ARGS exits 0.
expect_ok() {
  local rc=0
  "$SLIMTRACE" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "not ok: slimtrace $* => exit $rc; stderr was:" >&2
    sed 's/^/    /' "$T/err" >&2
    FAILED=1
  else
    echo "ok: slimtrace $* => 0"
  fi
}

# A one-layer image at OCI layout $1 tag $2 holding /$3.
small_image() {
  local layout=$1 tag=$2 file=$3 b="$T/bundle-$2"
  [[ -d $layout ]] || umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --rootless --image "$layout:$tag" "$b" >/dev/null
  echo "$tag" >"$b/rootfs/$file"
  umoci repack --image "$layout:$tag" "$b" >/dev/null
  rm -rf "$b"
}

step "fixtures"
small_image "$T/L" alpha a.txt
small_image "$T/L" beta b.txt
skopeo copy -q oci:"$T/L":alpha docker-archive:"$T/A.tar":example.com/alpha:1
skopeo copy -q oci:"$T/L":beta docker-archive:"$T/B.tar":beta:2
# skopeo writes one image per archive; `docker save a b` writes both into one: merge by hand.
mkdir "$T/two"
tar -C "$T/two" -xf "$T/A.tar"
mv "$T/two/manifest.json" "$T/a-manifest.json"
tar -C "$T/two" -xf "$T/B.tar"
mv "$T/two/manifest.json" "$T/b-manifest.json"
jq -s '.[0] + .[1]' "$T/a-manifest.json" "$T/b-manifest.json" >"$T/two/manifest.json"
rm -f "$T/two/repositories"
tar -C "$T/two" -cf "$T/two.tar" .
[[ $(jq length "$T/two/manifest.json") -eq 2 ]] || fail "merged archive should hold 2 images"

# An OCI layout with one image, and copies of it with a corrupted layer, config, manifest.
small_image "$T/one" latest only.txt
manifest_of() { jq -r '.manifests[0].digest' "$1/index.json" | cut -d: -f2; }
M=$(manifest_of "$T/one")
LAYER=$(jq -r '.layers[0].digest' "$T/one/blobs/sha256/$M")
CONFIG=$(jq -r '.config.digest' "$T/one/blobs/sha256/$M")
# Same size, one byte changed. In the gzip header's MTIME field the stream still decompresses, so
# only the digest can notice; in the middle, the deflate data itself is corrupt.
flip_byte() {  # flip_byte FILE OFFSET
  local orig
  orig=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  # shellcheck disable=SC2059  # the format is the octal escape of the new byte
  printf "$(printf '\\%03o' $(((orig + 1) % 256)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
cp -r "$T/one" "$T/badlayer"
flip_byte "$T/badlayer/blobs/sha256/${LAYER#sha256:}" 4
cp -r "$T/one" "$T/corruptgz"
f="$T/corruptgz/blobs/sha256/${LAYER#sha256:}"
flip_byte "$f" $(($(stat -c %s "$f") / 2))
cp -r "$T/one" "$T/badconfig"
f="$T/badconfig/blobs/sha256/${CONFIG#sha256:}"
jq -c '.architecture = "arm64"' "$f" >"$f.new" && mv "$f.new" "$f"
cp -r "$T/one" "$T/missing"
rm "$T/missing/blobs/sha256/${LAYER#sha256:}"
cp -r "$T/one" "$T/truncated"
f="$T/truncated/blobs/sha256/${LAYER#sha256:}"
truncate -s $(($(stat -c %s "$f") / 2)) "$f"
mkdir "$T/notalayout"
echo 'hello' >"$T/notalayout/readme.txt"
echo 'not a tar' >"$T/garbage.tar"

step "unknown references and things that are not images"
expect_error 3 "/nonexistent" -- xray /nonexistent
expect_error 3 "/nonexistent" -- xray oci:/nonexistent
expect_error 3 "/nonexistent" -- xray docker-archive:/nonexistent.tar
expect_error 3 "$T/notalayout" -- xray "$T/notalayout"
expect_error 3 "$T/notalayout" -- xray oci:"$T/notalayout"
expect_error 3 "$T/garbage.tar" -- xray docker-archive:"$T/garbage.tar"
expect_error 3 "nosuchtag" -- xray oci:"$T/L":nosuchtag

step "several images: ambiguous without a selection, selectable by name:tag and :@N"
expect_error 3 "example.com/alpha:1" "beta:2" -- xray docker-archive:"$T/two.tar"
expect_error 3 "alpha" "beta" -- xray oci:"$T/L"
expect_error 3 "gamma:3" -- xray docker-archive:"$T/two.tar":gamma:3
expect_error 3 "@5" -- xray docker-archive:"$T/two.tar":@5
picks() {  # picks REF FILE: unpacking REF gives /FILE
  local d="$T/pick-$RANDOM"
  if "$SLIMTRACE" -q unpack "$1" "$d" 2>"$T/err" && [[ -f $d/$2 ]]; then
    echo "ok: $1 selects the image holding /$2"
  else
    echo "not ok: $1 should select the image holding /$2: $(cat "$T/err")" >&2
    FAILED=1
  fi
  rm -rf "$d"
}
picks docker-archive:"$T/two.tar":example.com/alpha:1 a.txt
picks docker-archive:"$T/two.tar":beta:2 b.txt
picks docker-archive:"$T/two.tar":@0 a.txt
picks docker-archive:"$T/two.tar":@1 b.txt
picks oci:"$T/L":alpha a.txt
picks oci:"$T/L":beta b.txt
picks docker-archive:"$T/A.tar" a.txt
picks "$T/A.tar" a.txt

step "corrupted, truncated and missing blobs"
expect_error 3 "${LAYER:7:12}" "digest" -- xray oci:"$T/badlayer"
expect_error 3 "${LAYER:7:12}" -- xray oci:"$T/corruptgz"
expect_error 3 "${CONFIG:7:12}" "digest" -- xray oci:"$T/badconfig"
expect_error 3 "${LAYER:7:12}" -- xray oci:"$T/missing"
expect_error 3 "${LAYER:7:12}" -- xray oci:"$T/truncated"
expect_error 3 "${LAYER:7:12}" -- unpack oci:"$T/badlayer" "$T/never"
[[ ! -e $T/never ]] || { echo "not ok: unpack of a corrupt image left '$T/never' behind" >&2; FAILED=1; }
expect_error 3 "${LAYER:7:12}" -- squash oci:"$T/badlayer" -o oci:"$T/never-out"
[[ ! -e $T/never-out/index.json ]] || { echo "not ok: squash of a corrupt image wrote an index" >&2; FAILED=1; }
# validate reports problems (exit 1) rather than failing to read (exit 3).
rc=0
"$SLIMTRACE" validate oci:"$T/badlayer" >"$T/out" 2>&1 || rc=$?
if [[ $rc -eq 1 ]] && grep -q "${LAYER:7:12}" "$T/out"; then
  echo "ok: validate of a corrupt layer => 1, names the layer"
else
  echo "not ok: validate of a corrupt layer => $rc, want 1 naming ${LAYER:7:12}:" >&2
  sed 's/^/    /' "$T/out" >&2
  FAILED=1
fi
expect_ok validate oci:"$T/one"

step "usage"
expect_ok --help
expect_ok --version
for cmd in xray validate squash unpack; do
  expect_ok "$cmd" --help
done
# Usage errors are CLI11's: the problem on the first line, then a pointer to --help.
expect_usage() {  # expect_usage REGEX -- ARGS...
  local pat=$1 rc=0
  shift 2
  "$SLIMTRACE" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
  if [[ $rc -eq 2 ]] && head -n1 "$T/err" | grep -Eq -- "$pat"; then
    echo "ok: slimtrace $* => 2: $(head -n1 "$T/err")"
  else
    echo "not ok: slimtrace $* => $rc, want 2 and /$pat/ on the first line; stderr was:" >&2
    sed 's/^/    /' "$T/err" >&2
    FAILED=1
  fi
}
expect_usage "nosuchcommand|subcommand" -- nosuchcommand
expect_usage "--no-such-flag" -- xray --no-such-flag oci:"$T/one"
expect_usage "required" -- xray
expect_usage "bzip2|compression" -- squash --compression bzip2 oci:"$T/one" -o oci:"$T/x"

[[ $FAILED -eq 0 ]] || fail "some checks failed (see 'not ok' above)"
echo "PASS: cli_errors"
