#!/usr/bin/env bash
# Picks the base image for Meridian's Dockerfile and prints its name on stdout.
#
# The official node:20-bookworm-slim is used when it is present or can be
# pulled. Where no container registry is reachable (air-gapped sites, CI
# machines), a local image with the same layout (node 20 in /usr/local, a
# `node` user with uid 1000, Debian bookworm) is built once from Debian
# packages with debootstrap, using this machine's apt mirror, and reused.
#
#   scripts/docker-base.sh            # print the base to use, building it if needed
#   scripts/docker-base.sh --local    # always use (and if needed build) the local image
#   scripts/docker-base.sh --rebuild  # rebuild the local image
#
# Environment: MERIDIAN_BASE_OFFICIAL (default node:20-bookworm-slim),
# MERIDIAN_BASE_LOCAL (default meridian-base:bookworm), MERIDIAN_DEBIAN_MIRROR
# (default: the first Debian URI of /etc/apt/sources.list*), MERIDIAN_PULL_TIMEOUT
# (seconds to try pulling the official image, default 60).
# Progress goes to stderr, so `BASE=$(scripts/docker-base.sh)` captures the name only.
set -euo pipefail

OFFICIAL=${MERIDIAN_BASE_OFFICIAL:-node:20-bookworm-slim}
LOCAL=${MERIDIAN_BASE_LOCAL:-meridian-base:bookworm}
PULL_TIMEOUT=${MERIDIAN_PULL_TIMEOUT:-60}
MODE=${1:-auto}

log() { echo "docker-base: $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The first Debian archive URI apt is configured with (deb822 or one-line format).
debian_mirror() {
  if [[ -n ${MERIDIAN_DEBIAN_MIRROR:-} ]]; then echo "$MERIDIAN_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { print $2 }' | grep -v -- '-security' | head -n1 || true)
  if [[ -z $uri ]]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' | grep -v -- '-security' | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Node 20 for the image: the host's own node binary, npm and headers (bookworm's
# apt ships node 18). The headers let node-gyp build better-sqlite3 offline.
copy_host_node() {
  local root=$1 node npm_dir headers
  node=$(readlink -f "$(command -v node)")
  [[ $("$node" -p 'process.versions.node.split(".")[0]') == 20 ]] \
    || { log "the host's node is $("$node" --version), need 20.x to build $LOCAL"; return 1; }
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  headers=$(dirname "$(dirname "$node")")/include/node
  [[ -f $headers/node.h ]] || { log "node headers not found at $headers"; return 1; }
  install -D -m 0755 "$node" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include" "$root/usr/local/etc"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  cp -a "$headers" "$root/usr/local/include/node"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  # npm trusts the system store, so the local CAs below apply to it too.
  printf 'nodedir=/usr/local\ncafile=/etc/ssl/certs/ca-certificates.crt\nfund=false\naudit=false\nupdate-notifier=false\n' \
    > "$root/usr/local/etc/npmrc"
}

# The image trusts the local CAs this machine trusts (a site's TLS-inspecting
# proxy, an internal registry), so `npm ci` in the build works where it does here.
copy_local_cas() {
  local root=$1
  compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null || return 0
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" /usr/sbin/update-ca-certificates >&2
}

# Runs in a subshell, so its EXIT trap removes the folder however it ends.
build_local() (
  command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 1; }
  local root mirror
  root=$(mktemp -d /tmp/meridian-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  mirror=$(debian_mirror)
  log "building $LOCAL from $mirror (debootstrap, a few minutes)"
  # Build tools are included so the Dockerfile's build stage needs no network for apt.
  debootstrap --variant=minbase --include=ca-certificates,python3,make,g++ bookworm "$root" "$mirror" >&2
  copy_host_node "$root"
  copy_local_cas "$root"
  chroot "$root" /usr/sbin/groupadd --gid 1000 node
  chroot "$root" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "$LOCAL" >&2
  log "built $LOCAL"
)

case $MODE in
  auto)
    if have_image "$OFFICIAL"; then echo "$OFFICIAL"; exit 0; fi
    if have_image "$LOCAL"; then echo "$LOCAL"; exit 0; fi
    log "trying to pull $OFFICIAL (up to ${PULL_TIMEOUT}s)"
    if timeout "$PULL_TIMEOUT" docker pull -q "$OFFICIAL" >&2; then echo "$OFFICIAL"; exit 0; fi
    log "cannot pull $OFFICIAL; falling back to a local base image"
    build_local
    ;;
  --local) have_image "$LOCAL" || build_local ;;
  --rebuild) build_local ;;
  *) log "usage: $0 [--local|--rebuild]"; exit 64 ;;
esac
echo "$LOCAL"
