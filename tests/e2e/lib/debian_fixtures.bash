# Realistic "fat" Debian images for the e2e tests (sourced; needs root, debootstrap, umoci, flock).
#
#   debian_mirror                 the bookworm main mirror of this machine's apt sources (stdout),
#                                 or status 1; use: m=$(debian_mirror) || skip "..."
#   debian_base_rootfs DIR        an unpacked `debootstrap --variant=minbase bookworm` in DIR
#   debian_image KIND LAYOUT      OCI layout LAYOUT:latest for KIND (web, pyapp, batch, service):
#                                 layer 1 the base rootfs, layer 2 Debian packages and the app
#   debian_image_flags KIND       the probe flags for `slimtrace trace/build`, ONE PER LINE:
#                                 mapfile -t flags < <(debian_image_flags service)
#   debian_image_warm KIND        fills the cache only
#
# Call them as plain commands under `set -euo pipefail` (not inside `if` or `||`, where bash turns
# errexit off): they skip (exit 77) when no mirror is configured or reachable, and fail otherwise.
#
# Caches live in ${SLIMTRACE_CACHE_DIR:-/var/cache/slimtrace}/debian: the base rootfs as a tarball
# (kept across edits of this file: debootstrap is the slow part), and each finished image as an OCI
# layout keyed by a hash of this file and the kind, so an edit here rebuilds the images. Writers
# build under tmp/ and rename into place, serialised per cache entry with flock.

if ! declare -F skip >/dev/null; then
  # shellcheck source=common.bash
  source "${BASH_SOURCE[0]%/*}/common.bash"
fi

DEBIAN_FIXTURES_LIB=$(readlink -f "${BASH_SOURCE[0]}")
DEBIAN_SUITE=bookworm
# Bump to rebuild the cached base rootfs (its key does not include this file's hash on purpose).
DEBIAN_BASE_VERSION=1
DEBIAN_KINDS=(web pyapp batch service)
DEBIAN_PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# --- mirror -----------------------------------------------------------------------------------

# First URI of an enabled `deb` source for suite bookworm with component main: one-line style in
# sources.list and sources.list.d/*.list, deb822 style in sources.list.d/*.sources.
# SLIMTRACE_DEBIAN_MIRROR overrides (still never a host written here).
debian_mirror() {
  if [[ -n ${SLIMTRACE_DEBIAN_MIRROR:-} ]]; then
    echo "$SLIMTRACE_DEBIAN_MIRROR"
    return 0
  fi
  local etc=${DEBIAN_APT_ETC:-/etc/apt} f uri
  local files=()
  [[ -f $etc/sources.list ]] && files+=("$etc/sources.list")
  for f in "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  for f in "${files[@]}"; do
    if [[ $f == *.sources ]]; then
      uri=$(_debian_mirror_deb822 "$f")
    else
      uri=$(_debian_mirror_oneline "$f")
    fi
    if [[ -n $uri ]]; then
      echo "${uri%/}"
      return 0
    fi
  done
  return 1
}

_debian_mirror_oneline() {
  awk -v suite="$DEBIAN_SUITE" '
    { sub(/#.*/, "") }
    $1 != "deb" { next }
    {
      i = 2
      if ($i ~ /^\[/) {                       # [ options ], possibly spread over several fields
        while (i <= NF && $i !~ /\]$/) i++
        i++
      }
      uri = $(i); s = $(i + 1)
      if (s != suite || uri !~ /^(https?|file):/) next
      for (j = i + 2; j <= NF; j++) if ($j == "main") { print uri; exit }
    }' "$1"
}

_debian_mirror_deb822() {
  awk -v suite="$DEBIAN_SUITE" '
    function flush(   n, u, i, ok) {
      if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
          (" " comps " ") ~ / main / && tolower(enabled) != "no") {
        n = split(uris, u, " ")
        for (i = 1; i <= n; i++) if (u[i] ~ /^(https?|file):/) { print u[i]; found = 1; exit }
      }
      types = uris = suites = comps = enabled = ""
    }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^[A-Za-z-]+:/ {
      key = tolower($1); sub(/:$/, "", key)
      val = $0; sub(/^[^:]*:[ \t]*/, "", val)
      if (key == "types") types = val
      else if (key == "uris") uris = val
      else if (key == "suites") suites = val
      else if (key == "components") comps = val
      else if (key == "enabled") enabled = val
      next
    }
    END { if (!found) flush() }' "$1"
}

# --- cache helpers ----------------------------------------------------------------------------

_debian_cache() { echo "${SLIMTRACE_CACHE_DIR:-/var/cache/slimtrace}/debian"; }
_debian_arch() { dpkg --print-architecture 2>/dev/null || echo amd64; }
_debian_base_tar() { echo "$(_debian_cache)/$DEBIAN_SUITE-minbase-$(_debian_arch)-v$DEBIAN_BASE_VERSION.tar"; }
_debian_hash() { { cat "$DEBIAN_FIXTURES_LIB"; echo "$*"; } | sha256sum | cut -c1-16; }
_debian_image_dir() { echo "$(_debian_cache)/$1-$(_debian_arch)-$(_debian_hash "$1")"; }

_debian_require() {
  require_root
  require_tools debootstrap umoci flock tar chroot mount umount sha256sum
}

# Unmounts everything at or below $1 (deepest first); lazily when busy. Never leaves a bind mount
# of /dev behind for an `rm -rf` to walk into.
_debian_umount_below() {
  local root m
  root=$(readlink -f "$1" 2>/dev/null) || return 0
  local -a mounts=()
  while read -r m; do mounts+=("$m"); done < <(awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r)
  for m in "${mounts[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "warning: cannot unmount '$m'" >&2
  done
}

# rm -rf that stays on one filesystem: belt and braces against a mount left below $1.
_debian_rm() {
  local d
  for d in "$@"; do
    [[ -e $d ]] || continue
    _debian_umount_below "$d"
    rm -rf --one-file-system "$d"
  done
}

# Last lines of a log, indented, for skip/fail messages.
_debian_log_tail() { tail -n "${2:-15}" "$1" 2>/dev/null | sed 's/^/    /'; }

_debian_note() { echo "debian_fixtures: $*" >&2; }

# --- base rootfs ------------------------------------------------------------------------------

# Makes sure the base tarball exists (one debootstrap per machine, serialised with flock).
_debian_base_warm() {
  _debian_require
  local cache tar
  cache=$(_debian_cache)
  tar=$(_debian_base_tar)
  mkdir -p "$cache/tmp"
  [[ -s $tar ]] && return 0
  (
    exec 9>"$cache/base.lock"
    flock 9
    [[ -s $tar ]] && exit 0
    _debian_rm "$cache"/tmp/base.*
    local mirror
    mirror=$(debian_mirror) ||
      skip "no Debian $DEBIAN_SUITE main source in ${DEBIAN_APT_ETC:-/etc/apt}/sources.list{,.d/*.list,.d/*.sources} (set SLIMTRACE_DEBIAN_MIRROR)"
    local work
    work=$(mktemp -d "$cache/tmp/base.XXXXXX")
    trap '_debian_rm "$work"' EXIT
    trap 'exit 130' INT TERM HUP
    local t0=$SECONDS
    _debian_note "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (once per machine)"
    if ! debootstrap --variant=minbase --arch="$(_debian_arch)" "$DEBIAN_SUITE" "$work/rootfs" "$mirror" \
      >"$work/debootstrap.log" 2>&1; then
      _debian_umount_below "$work"
      echo "debootstrap log (last lines):"
      _debian_log_tail "$work/debootstrap.log"
      skip "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror failed (mirror unreachable?)"
    fi
    _debian_umount_below "$work/rootfs"
    # debootstrap's own download cache is not part of a Debian base image.
    find "$work/rootfs/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$work/rootfs" -cf "$work/base.tar" .
    mv -f "$work/base.tar" "$tar"
    _debian_note "base rootfs cached in $tar ($((SECONDS - t0))s)"
  )
}

# An unpacked minbase bookworm rootfs in DIR (created; must be absent or empty).
debian_base_rootfs() {
  local dir=${1:?debian_base_rootfs DIR}
  if [[ -e $dir && -n $(ls -A "$dir") ]]; then fail "debian_base_rootfs: '$dir' is not empty"; fi
  _debian_base_warm
  mkdir -p "$dir"
  tar --numeric-owner --xattrs --xattrs-include='*' -C "$dir" -xpf "$(_debian_base_tar)"
}

# OCI layout with the base rootfs as its only layer (shared by all kinds; keyed like the images).
_debian_base_layout_warm() {
  local cache dir
  cache=$(_debian_cache)
  dir=$(_debian_image_dir base)
  [[ -f $dir/index.json ]] && return 0
  _debian_base_warm
  (
    exec 9>"$cache/base-layout.lock"
    flock 9
    [[ -f $dir/index.json ]] && exit 0
    _debian_rm "$cache"/tmp/base-layout.*
    local work
    work=$(mktemp -d "$cache/tmp/base-layout.XXXXXX")
    trap '_debian_rm "$work"' EXIT
    trap 'exit 130' INT TERM HUP
    umoci init --layout "$work/layout"
    umoci new --image "$work/layout:latest"
    umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$work/bundle/rootfs" -xpf "$(_debian_base_tar)"
    umoci repack --history.created_by "debootstrap --variant=minbase $DEBIAN_SUITE" \
      --image "$work/layout:latest" "$work/bundle" >/dev/null
    _debian_rm "$work/bundle"
    _debian_rm "$cache"/base-"$(_debian_arch)"-*
    mv -T "$work/layout" "$dir"
  )
}

# --- chroot -----------------------------------------------------------------------------------

# Installs PKG... into rootfs $1 with apt-get in a chroot: /proc and /dev mounted for the
# maintainer scripts and always unmounted (EXIT trap), services kept from starting with a
# policy-rc.d, recommends off. The apt lists and downloaded .debs stay, as in a careless
# Dockerfile. Output goes to log $2.
_debian_chroot_apt() {
  local r=$1 log=$2
  shift 2
  (
    trap '_debian_umount_below "$r/proc"; _debian_umount_below "$r/dev"; _debian_chroot_restore "$r"' EXIT
    trap 'exit 130' INT TERM HUP
    mount -t proc proc "$r/proc"
    mount --bind /dev "$r/dev"
    # Name resolution for apt inside the chroot; the image keeps the file it had.
    if [[ -e $r/etc/resolv.conf || -L $r/etc/resolv.conf ]]; then mv "$r/etc/resolv.conf" "$r/etc/resolv.conf.slimtrace-orig"; fi
    cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || : >"$r/etc/resolv.conf"
    printf '#!/bin/sh\n# Image build: never start services.\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 0755 "$r/usr/sbin/policy-rc.d"
    local -a env=(env -i "$DEBIAN_PATH_ENV" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
    local v
    for v in http_proxy https_proxy no_proxy; do [[ -n ${!v:-} ]] && env+=("$v=${!v}"); done
    if ! chroot "$r" "${env[@]}" apt-get update >>"$log" 2>&1; then
      echo "apt-get update log (last lines):"
      _debian_log_tail "$log"
      skip "apt-get update in the image chroot failed (mirror unreachable?)"
    fi
    if ! chroot "$r" "${env[@]}" apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1; then
      _debian_log_tail "$log" 25 >&2
      fail "apt-get install $* in the image chroot failed"
    fi
    if [[ -n ${DEBIAN_CHROOT_RUN:-} ]]; then
      chroot "$r" "${env[@]}" /bin/sh -ec "$DEBIAN_CHROOT_RUN" >>"$log" 2>&1 ||
        { _debian_log_tail "$log" >&2; fail "in the image chroot: $DEBIAN_CHROOT_RUN"; }
    fi
  )
}

_debian_chroot_restore() {
  local r=$1
  rm -f "$r/usr/sbin/policy-rc.d" "$r/etc/resolv.conf"
  if [[ -e $r/etc/resolv.conf.slimtrace-orig || -L $r/etc/resolv.conf.slimtrace-orig ]]; then
    mv "$r/etc/resolv.conf.slimtrace-orig" "$r/etc/resolv.conf"
  fi
}

# --- the images -------------------------------------------------------------------------------

_debian_check_kind() {
  case ${1:-} in
  web | pyapp | batch | service) ;;
  *) fail "unknown Debian fixture kind '${1:-}' (expected one of: ${DEBIAN_KINDS[*]})" ;;
  esac
}

# Builds the cached layout of KIND unless it is there.
debian_image_warm() {
  local kind=$1
  _debian_check_kind "$kind"
  _debian_require
  local cache dir
  cache=$(_debian_cache)
  dir=$(_debian_image_dir "$kind")
  [[ -f $dir/index.json ]] && return 0
  _debian_base_layout_warm
  (
    exec 9>"$cache/$kind.lock"
    flock 9
    [[ -f $dir/index.json ]] && exit 0
    # Whatever a killed build of this kind left behind (we hold its lock).
    _debian_rm "$cache/tmp/$kind".*
    local work t0=$SECONDS
    work=$(mktemp -d "$cache/tmp/$kind.XXXXXX")
    trap '_debian_rm "$work"' EXIT
    trap 'exit 130' INT TERM HUP
    _debian_note "building the $kind image"
    cp -a "$(_debian_image_dir base)" "$work/layout"
    umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
    local r=$work/bundle/rootfs
    local -a pkgs=() config=()
    DEBIAN_CHROOT_RUN=
    "_debian_$kind" "$r" # sets pkgs, config, DEBIAN_CHROOT_RUN; writes the app's files
    _debian_chroot_apt "$r" "$work/apt.log" "${pkgs[@]}"
    "_debian_${kind}_after" "$r"
    umoci repack --history.created_by "apt-get install --no-install-recommends ${pkgs[*]}; add the $kind app" \
      --image "$work/layout:latest" "$work/bundle" >/dev/null
    umoci config --image "$work/layout:latest" --history.created_by "config: $kind" \
      --config.env "$DEBIAN_PATH_ENV" --config.label "org.slimtrace.fixture=debian-$kind" "${config[@]}" >/dev/null
    _debian_rm "$work/bundle"
    _debian_rm "$cache/$kind-$(_debian_arch)-"*
    mv -T "$work/layout" "$dir"
    _debian_note "$kind image cached in $dir ($((SECONDS - t0))s, $(du -sh "$dir" | cut -f1))"
  )
}

# OCI layout LAYOUT (absent or empty), tag latest, of fixture KIND.
debian_image() {
  local kind=${1:?debian_image KIND LAYOUT} layout=${2:?debian_image KIND LAYOUT}
  _debian_check_kind "$kind"
  if [[ -e $layout ]]; then
    [[ -d $layout && -z $(ls -A "$layout") ]] || fail "debian_image: '$layout' exists and is not empty"
    rmdir "$layout"
  fi
  debian_image_warm "$kind"
  mkdir -p "$(dirname "$layout")"
  cp -a "$(_debian_image_dir "$kind")" "$layout"
}

# Probe flags for KIND, one argument per line. web and pyapp need none: the default GET / and
# crawl reach every route. The batch job runs to completion by default (no ports). The service
# speaks RESP, so a host command talks to it through bash's /dev/tcp (the host's /bin/sh may be
# dash, which has none).
debian_image_flags() {
  _debian_check_kind "${1:-}"
  case $1 in
  service)
    # shellcheck disable=SC2016 # expanded by the probe's shell, not here
    printf '%s\n' --probe-cmd 'timeout 20 bash -c '\''exec 3<>"/dev/tcp/$SLIMTRACE_TARGET_HOST/${SLIMTRACE_PORT:-6379}" && printf "PING\r\nSET fixture:key slimtrace\r\nGET fixture:key\r\nQUIT\r\n" >&3 && r=$(tr -d "\r" <&3 | tr "\n" " ") && echo "redis: $r" && [ "$r" = "+PONG +OK \$9 slimtrace +OK " ]'\'
    ;;
  esac
}

# --- web: nginx-light with a small static site ------------------------------------------------

_debian_web() {
  local r=$1
  pkgs=(nginx-light)
  config=(--config.cmd nginx --config.cmd -g --config.cmd "daemon off;" --config.exposedports 80/tcp
    --config.stopsignal SIGQUIT --config.workingdir /var/www/site)
  local s=$r/var/www/site
  mkdir -p "$s/css" "$s/img" "$s/docs" "$s/downloads"
  cat >"$s/index.html" <<'EOF'
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Fixture site</title><link rel="stylesheet" href="/css/style.css"></head>
<body>
<header><img src="img/logo.png" alt="logo" width="16" height="16"> Fixture site</header>
<nav>
  <a href="about.html">About</a>
  <a href="contact.html">Contact</a>
  <a href="docs/">Documentation</a>
  <a href="downloads/notes.txt">Release notes</a>
</nav>
<p>A static site served by nginx from a Debian image.</p>
</body>
</html>
EOF
  cat >"$s/about.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>About</title><link rel="stylesheet" href="css/style.css"></head>
<body><h1>About</h1><p>Made for the slimtrace end-to-end tests.</p><a href="index.html">Home</a></body></html>
EOF
  cat >"$s/contact.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Contact</title><link rel="stylesheet" href="css/style.css"></head>
<body><h1>Contact</h1><p>Nobody lives here.</p><a href="/">Home</a></body></html>
EOF
  cat >"$s/docs/index.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Docs</title><link rel="stylesheet" href="../css/style.css"></head>
<body><h1>Documentation</h1><a href="guide.html">Guide</a> <a href="../index.html">Home</a></body></html>
EOF
  cat >"$s/docs/guide.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Guide</title><link rel="stylesheet" href="/css/style.css"></head>
<body><h1>Guide</h1><p>Step one: there is no step two.</p><img src="../img/logo.png" alt=""></body></html>
EOF
  cat >"$s/css/style.css" <<'EOF'
body { font-family: sans-serif; margin: 2em; background: #fafafa url("../img/logo.png") no-repeat top right; }
nav a { margin-right: 1em; }
EOF
  printf 'v1.0: first release\nv1.1: fixes\n' >"$s/downloads/notes.txt"
  base64 -d >"$s/img/logo.png" <<'EOF'
iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAABlklEQVR42hXRURVEIQhFUSMYgQhGMAIRiGCEE8EIRiACEYhABCLMG7/ZrMt1jMEcyGAN9kAHNjgDBnfwBj6IQQ5q0IMxJnMikzXZE53Y5EyY3Mmb+CQmOalJzw8IUxBhCVtQwYQjIFzhCS6EkEIJLR9YzIUs1mIvdGGLs2BxF2/hi1jkoha9PrCZG9mszd7oxjZnw+Zu3sY3sclNbXp/QJmKKEvZiiqmHAXlKk9xJZRUSmn9gDENMZaxDTXMOAbGNZ7hRhhplNH2gcM8yGEd9kEPdjgHDvfwDn6IQx7q0OcD/wK/Sr4jv9hfkG/1N/x/Fx44BCQU9Pc94zIvclmXfdGLXc79j9/Lu/glLnmpS98PPOZDHuuxH/qwx3n/5ffxHv6IRz7q0e8DznTEWc521DHn+D/KdZ7jTjjplNP+gWAGEqxgBxpYcOIf/AYv8CCCDCro+EAyE0lWshNNLDn5P/MmL/Ekkkwq6fxAMQspVrELLaw49S/lFq/wIoosquj6QDMbaVazG22sOf2v8Dav8SaabKrp5geIAnAQC3NfwAAAAABJRU5ErkJggg==
EOF
}

_debian_web_after() {
  local r=$1
  cat >"$r/etc/nginx/sites-available/site" <<'EOF'
server {
    listen 80 default_server;
    server_name _;
    root /var/www/site;
    index index.html;
    location / {
        try_files $uri $uri/ =404;
    }
    location /css/ {
        expires 1h;
    }
}
EOF
  rm -f "$r/etc/nginx/sites-enabled/default"
  ln -s ../sites-available/site "$r/etc/nginx/sites-enabled/site"
  # As the official nginx image does: logs to the container's stdout/stderr.
  ln -sf /dev/stdout "$r/var/log/nginx/access.log"
  ln -sf /dev/stderr "$r/var/log/nginx/error.log"
}

# --- pyapp: python3 http.server whose routes import lazily ------------------------------------

_debian_pyapp() {
  local r=$1
  pkgs=(python3 tzdata)
  config=(--config.cmd python3 --config.cmd app.py --config.workingdir /app --config.user app
    --config.exposedports 8000/tcp --config.env PYTHONUNBUFFERED=1 --config.env LANG=C.UTF-8)
  DEBIAN_CHROOT_RUN='useradd --system --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin app'
  mkdir -p "$r/app/templates" "$r/app/static"
  cat >"$r/app/app.py" <<'EOF'
"""A small web app. Each route imports what it needs on first use, as real apps do."""

import http.server
import os

PORT = int(os.environ.get("PORT", "8000"))
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = b"slimtrace fixture\n"


def route_index():
    links = "\n".join(f'<li><a href="{path}">{path}</a> {doc}</li>' for path, (_, doc) in ROUTES.items() if path != "/")
    return "text/html; charset=utf-8", (
        '<!DOCTYPE html>\n<html><head><title>pyapp</title><link rel="stylesheet" href="/static/app.css"></head>\n'
        f"<body><h1>pyapp</h1><ul>\n{links}\n</ul></body></html>\n"
    )


def route_json():
    import json

    return "application/json", json.dumps({"app": "pyapp", "items": [1, 2, 3], "ok": True}, sort_keys=True) + "\n"


def route_hash():
    import hashlib

    names = ("md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256")
    return "text/plain", "".join(f"{n} {hashlib.new(n, DATA).hexdigest()}\n" for n in names)


def route_db():
    import sqlite3

    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE fruit (name TEXT PRIMARY KEY, qty INTEGER)")
    con.executemany("INSERT INTO fruit VALUES (?, ?)", [("pear", 3), ("apple", 5), ("fig", 7)])
    rows = con.execute("SELECT name, qty FROM fruit ORDER BY name").fetchall()
    total = con.execute("SELECT sum(qty) FROM fruit").fetchone()[0]
    con.close()
    return "text/plain", "".join(f"{n} {q}\n" for n, q in rows) + f"total {total}\nsqlite {sqlite3.sqlite_version}\n"


def route_time():
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    t = datetime(2024, 3, 31, 1, 30, tzinfo=timezone.utc)
    zones = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe")
    return "text/plain", "".join(f"{z} {t.astimezone(ZoneInfo(z)).isoformat()}\n" for z in zones)


def route_decimal():
    import decimal

    ctx = decimal.Context(prec=40)
    return "text/plain", f"{ctx.divide(decimal.Decimal(1), decimal.Decimal(7))}\n{ctx.sqrt(decimal.Decimal(2))}\n"


def route_compress():
    import bz2
    import lzma

    blob = DATA * 100
    return "text/plain", f"bz2 {len(bz2.compress(blob))}\nlzma-roundtrip {lzma.decompress(lzma.compress(blob)) == blob}\n"


def route_page():
    import string

    with open(os.path.join(HERE, "templates", "page.html"), encoding="utf-8") as f:
        page = string.Template(f.read())
    return "text/html; charset=utf-8", page.substitute(title="Template", body="Rendered from a template file.")


def route_now():
    import time

    return "text/plain", f"{time.time():.6f}\n"


ROUTES = {
    "/": (route_index, "index"),
    "/json": (route_json, "json"),
    "/hash": (route_hash, "hashlib (OpenSSL)"),
    "/db": (route_db, "sqlite3 (extension module)"),
    "/time": (route_time, "zoneinfo with tzdata"),
    "/decimal": (route_decimal, "decimal"),
    "/compress": (route_compress, "bz2 and lzma"),
    "/page": (route_page, "a template read per request"),
    "/now": (route_now, "the current time (changes)"),
}


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "pyapp/1.0"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/static/"):
            return self.static(path[len("/static/"):])
        route = ROUTES.get(path)
        if route is None:
            return self.reply(404, "text/plain", "not found\n")
        ctype, body = route[0]()
        self.reply(200, ctype, body)

    def static(self, name):
        full = os.path.join(HERE, "static", os.path.basename(name))
        try:
            with open(full, "rb") as f:
                body = f.read()
        except OSError:
            return self.reply(404, "text/plain", "not found\n")
        self.reply(200, "text/css", body)

    def reply(self, status, ctype, body):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def stop(signum, frame):
    raise SystemExit(0)


if __name__ == "__main__":
    import signal

    # As PID 1 in a container, SIGTERM has no default action: without a handler `docker stop` waits
    # for its timeout and kills.
    signal.signal(signal.SIGTERM, stop)
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"pyapp listening on :{PORT}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
EOF
  cat >"$r/app/templates/page.html" <<'EOF'
<!DOCTYPE html>
<html><head><title>$title</title><link rel="stylesheet" href="/static/app.css"></head>
<body><h1>$title</h1><p>$body</p><a href="/">back</a></body></html>
EOF
  printf 'body { font-family: sans-serif; }\nli { margin: 0.2em 0; }\n' >"$r/app/static/app.css"
}

_debian_pyapp_after() { :; }

# --- batch: a shell pipeline over bundled data, no ports ---------------------------------------

_debian_batch() {
  local r=$1
  pkgs=(jq)
  config=(--config.entrypoint /usr/local/bin/nightly-report --config.cmd /data/input --config.workingdir /data
    --config.user 65534:65534 --config.env TZ=UTC)
  mkdir -p "$r/data/input" "$r/usr/local/bin"
  cat >"$r/data/input/sales.csv" <<'EOF'
date,region,product,units,price
2023-11-14,north,widget,12,2.50
2023-11-14,south,widget,7,2.50
2023-11-14,north,gadget,3,10.00
2023-11-14,east,gizmo,9,4.25
2023-11-14,south,gadget,5,10.00
2023-11-14,west,widget,20,2.50
2023-11-14,east,widget,1,2.50
EOF
  {
    local i s
    for i in $(seq 1 60); do
      case $((i % 7)) in 0) s=404 ;; 3) s=500 ;; 5) s=301 ;; *) s=200 ;; esac
      printf '10.0.0.%d - - [14/Nov/2023:22:13:%02d +0000] "GET /item/%d HTTP/1.1" %d %d\n' $((i % 9)) $((i % 60)) $((i % 13)) "$s" $((i * 37))
    done
  } | gzip -n -9 >"$r/data/input/access.log.gz"
  cat >"$r/usr/local/bin/nightly-report" <<'EOF'
#!/bin/sh
# Nightly report over the bundled sales and access log; prints a deterministic summary.
set -eu
in=${1:-/data/input}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

day=$(date -u -d @1700000000 +%Y-%m-%d)
echo "report for $day"

echo "== revenue by region"
sed 1d "$in/sales.csv" | awk -F, '{ t[$2] += $4 * $5 } END { for (r in t) printf "%s %.2f\n", r, t[r] }' |
  sort -k2,2nr -k1,1 | tee "$out/regions.txt"

echo "== units by product"
cut -d, -f3,4 "$in/sales.csv" | sed 1d | tr ',' ' ' |
  awk '{ u[$1] += $2 } END { for (p in u) print p, u[p] }' | sort | tee "$out/products.txt"

echo "== status codes"
zcat "$in/access.log.gz" | awk '{ print $9 }' | sort | uniq -c | sed 's/^ *//' | tee "$out/status.txt"
errors=$(zcat "$in/access.log.gz" | grep -c '" 5[0-9][0-9] ' || true)
echo "server errors: $errors"

echo "== summary"
jq -n -S --arg day "$day" --rawfile regions "$out/regions.txt" --argjson errors "$errors" \
  '{day: $day, regions: ($regions | split("\n") | map(select(length > 0) | split(" ") | {(.[0]): (.[1] | tonumber)}) | add), server_errors: $errors}' |
  tee "$out/summary.json"
gzip -n -c "$out/summary.json" | wc -c | sed 's/^/summary.json.gz bytes: /'

echo "== checksums"
(cd "$out" && sha256sum regions.txt products.txt status.txt summary.json)
lines=$(cat "$out"/*.txt | wc -l)
echo "done: $lines lines"
EOF
  chmod 0755 "$r/usr/local/bin/nightly-report"
}

_debian_batch_after() { :; }

# --- service: redis-server, a TCP service that is not HTTP ------------------------------------

_debian_service() {
  local r=$1
  pkgs=(redis-server)
  # No config file: the defaults (saving on shutdown included) plus what a container needs.
  config=(--config.entrypoint redis-server --config.cmd --protected-mode --config.cmd no
    --config.cmd --bind --config.cmd 0.0.0.0 --config.cmd --daemonize --config.cmd no
    --config.workingdir /var/lib/redis --config.user redis --config.exposedports 6379/tcp)
}

_debian_service_after() { :; }
