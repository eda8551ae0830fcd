#!/usr/bin/env bash
# Builds the bundled example image, an OCI layout at OUTDIR tagged "latest", from Debian packages
# only, with umoci. It is a tiny busybox web server plus the waste `slimtrace xray` should find:
#   layer 1  busybox-static (/bin/busybox and its applet links), /etc/passwd, /etc/group
#   layer 2  the web app: /srv/www pages; entrypoint busybox httpd on 8080
#   layer 3  build tools left behind (cpp-12's cc1, tcc, make), their .debs in the apt cache,
#            an apt list, fake secrets (.env, SSH key, .npmrc token), a 5 MB build artifact
#   layer 4  deletes the build artifact (a whiteout: its bytes still ship in layer 3)
# The result is cached: nothing is done when OUTDIR holds an image made by this same script.
# Usage: examples/make-example-image.sh OUTDIR   (as root, or with umoci --rootless as a user)
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$(realpath -m "$1")
stamp="$out.stamp"
script_hash=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$out/index.json" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$script_hash" ]; then
  echo "example image up to date: $out"
  exit 0
fi

for tool in umoci apt-get dpkg-deb busybox; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done
rootless=()
[ "$(id -u)" -ne 0 ] && rootless=(--rootless)

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.example-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/image
bundle=$work/bundle
root=$bundle/rootfs
created=2024-01-01T00:00:00Z  # fixed, so rebuilds differ only where the content does

repack() {
  umoci repack --refresh-bundle --history.created "$created" --history.created_by "$1" \
    --image "$layout:latest" "$bundle"
}

umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci config --no-history --image "$layout:latest" --created "$created" --architecture amd64 --os linux
umoci unpack "${rootless[@]}" --image "$layout:latest" "$bundle" >/dev/null

# Layer 1: busybox and the users the runtime resolves.
busybox_bin=$(dpkg -L busybox-static | grep -m1 -E '/bin/busybox$')
install -d -m 0755 "$root/bin" "$root/etc" "$root/root" "$root/srv"
install -d -m 1777 "$root/tmp"
install -m 0755 "$busybox_bin" "$root/bin/busybox"
for applet in $("$busybox_bin" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/srv/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
www-data:x:33:
nogroup:x:65534:
GROUP
repack "COPY busybox-static /bin/ (applet links) and /etc/passwd, /etc/group"

# Layer 2: the web app.
install -d -m 0755 "$root/srv/www" "$root/srv/www/docs" "$root/srv/www/api"
cat >"$root/srv/www/index.html" <<'HTML'
<!doctype html>
<html><head><title>slimtrace example</title><link rel="stylesheet" href="style.css"></head>
<body><h1>It works</h1><p>A tiny site served by busybox httpd.</p>
<ul><li><a href="docs/about.html">About</a></li><li><a href="api/status.json">Status</a></li></ul>
</body></html>
HTML
cat >"$root/srv/www/docs/about.html" <<'HTML'
<!doctype html>
<html><head><title>About</title></head><body><p>The example image of slimtrace.</p></body></html>
HTML
printf 'body { font-family: sans-serif; margin: 2em; }\n' >"$root/srv/www/style.css"
printf '{"status":"ok"}\n' >"$root/srv/www/api/status.json"
repack "COPY site/ /srv/www/"

# Layer 3: what a careless single-stage build leaves behind.
debs=$work/debs
install -d -m 0755 "$debs"
chmod 0755 "$work"
# apt-get download uses the mirror apt is configured with; it runs as the _apt user when it can.
if ! (cd "$debs" && apt-get download -q cpp-12 tcc make) >"$work/apt.log" 2>&1; then
  cat "$work/apt.log" >&2
  echo "$0: apt-get download failed" >&2
  exit 1
fi
for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$root"
done
install -d -m 0755 "$root/var/cache/apt/archives" "$root/var/lib/apt/lists"
cp "$debs"/*.deb "$root/var/cache/apt/archives/"
# A package list as apt leaves it after `apt-get update`, named after the host's configured mirror.
list_name=$(find /var/lib/apt/lists -maxdepth 1 -name '*_InRelease' -printf '%f\n' 2>/dev/null | sort | head -n1)
list_name=${list_name%_InRelease}
[ -n "$list_name" ] || list_name=example_dists_stable
apt-cache show cpp-12 tcc make >"$root/var/lib/apt/lists/${list_name}_main_binary-amd64_Packages" 2>/dev/null || true
printf 'AWS_ACCESS_KEY_ID=AKIAFAKEFAKEFAKEFAKE\nAWS_SECRET_ACCESS_KEY=fake/ExampleSecretNotRealAtAll0123456789\n' \
  >"$root/srv/www/.env"
install -d -m 0700 "$root/root/.ssh"
{
  echo "-----BEGIN OPENSSH PRIVATE KEY-----"
  head -c 600 /dev/urandom | base64 -w 70
  echo "-----END OPENSSH PRIVATE KEY-----"
} >"$root/root/.ssh/id_rsa"
chmod 0600 "$root/root/.ssh/id_rsa"
printf '//registry.npmjs.org/:_authToken=fake-npm-token-0000000000\n' >"$root/root/.npmrc"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$root/tmp/build-artifact.bin"
repack "RUN apt-get download cpp-12 tcc make && dpkg -x ... && make build"

# Layer 4: the cleanup that comes one layer too late.
rm "$root/tmp/build-artifact.bin"
repack "RUN rm /tmp/build-artifact.bin"

umoci config --image "$layout:latest" --created "$created" \
  --history.created "$created" --history.created_by "ENTRYPOINT busybox httpd; EXPOSE 8080" \
  --config.entrypoint /bin/busybox --config.entrypoint httpd --config.entrypoint -f \
  --config.entrypoint -p --config.entrypoint 8080 --config.entrypoint -h --config.entrypoint /srv/www \
  --config.exposedports 8080/tcp --config.workingdir /srv/www
umoci gc --layout "$layout"

rm -rf "$out"
mv "$layout" "$out"
echo "$script_hash" >"$stamp"
echo "example image written: $out ($(du -sh "$out" | cut -f1))"
