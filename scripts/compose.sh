#!/usr/bin/env bash
# The docker-compose stack and its outage toolbox (README, "With Docker Compose").
# Works with the `docker compose` v2 plugin or docker-compose v1, on the
# project named by COMPOSE_PROJECT_NAME (default: this folder's name).
#
#   up                  build the image (on a local base image where node:20-bookworm-slim
#                       cannot be pulled: scripts/docker-base.sh) and start the stack; waits until healthy
#   down [--wipe]       remove the containers and networks; --wipe also the volumes (all data)
#   regions             the stack's region names, one a line
#   url R               the published base URL of region R, e.g. http://127.0.0.1:7101
#   wait R              wait until region R's container is healthy (/readyz answers 200)
#   isolate R           cut region R off the WAN (its clients still reach it)
#   reconnect R         put R back on the WAN under its service name
#   stop|start|pause|unpause|restart R
#   kill R              SIGKILL the region's container (no orderly shutdown); it stays down until `start R`
#   crash R             SIGKILL the region's process inside its container, as a crash would: Docker starts it
#                       again at once (restart: on-failure) and it recovers from its volume
#   wipe R              delete R's container and volume, start it empty: it rebuilds from its peers
#   link A B FAULT      fault on the link between regions A and B, through its proxy service:
#                       "latency 100ms ±20ms", "bandwidth 64kb/s", "loss 5%", "slicer 16 5ms", "blackhole", "stall", "down", "heal";
#                       latency, loss and bandwidth combine: "latency 80ms ±20ms, loss 1%, bandwidth 1mb/s"
#   links               each link proxy's fault and byte counters
#   sync R              R's /v1/sync (links, lag, digest), from inside its container
#   help
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "compose.sh: $*" >&2; exit 2; }

# The compose client: the v2 plugin when installed, else docker-compose v1.
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
compose() { "${COMPOSE[@]}" "$@"; }

# The running container of a service (one per service here).
container_of() {
  local id
  id=$(compose ps -q "$1" 2>/dev/null | head -n1)
  [[ -n $id ]] || die "no container for service '$1' (is the stack up, with the same COMPOSE_PROJECT_NAME?)"
  echo "$id"
}
# `<project>_wan`, the project read from the container's compose label.
wan_of() { echo "$(docker inspect -f '{{ index .Config.Labels "com.docker.compose.project" }}' "$1")_wan"; }
# Regions are the services that are not link proxies.
regions() { compose config --services | grep -v '^wan-'; }
# The port a region listens on in its container: the one in its compose config.
port_of() { sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "regions/compose/$1.json"; }

# Polls the container's HEALTHCHECK (scripts/healthcheck.mjs: /readyz) for up to MERIDIAN_WAIT_SECONDS (120).
wait_healthy() {
  local deadline=$((SECONDS + ${MERIDIAN_WAIT_SECONDS:-120})) state=''
  while ((SECONDS < deadline)); do
    state=$(docker inspect -f '{{ .State.Health.Status }}' "$(container_of "$1")" 2>/dev/null || true)
    [[ $state == healthy ]] && { echo "$1: healthy"; return 0; }
    sleep 1
  done
  die "$1 is not healthy after ${MERIDIAN_WAIT_SECONDS:-120}s (last state: ${state:-none}); see: docker compose logs $1"
}
region() { [[ $1 =~ ^[a-z0-9-]{1,32}$ ]] || die "not a region name: '$1'"; echo "$1"; }

# POSTs or GETs the control endpoint of a link proxy, from inside its container.
proxy_call() {
  local service=$1 method=$2 body=${3:-}
  docker exec "$(container_of "$service")" node -e '
    const [method, body] = process.argv.slice(1);
    fetch("http://127.0.0.1:7300/" + (method === "POST" ? "fault" : "stats"), method === "POST" ? { method, body } : {})
      .then(async (r) => { console.log(await r.text()); process.exit(r.ok ? 0 : 1); }, (e) => { console.error(e.message); process.exit(1); });
  ' "$method" "$body"
}

link_service() {
  local a b
  a=$(region "$1"); b=$(region "$2")
  [[ $a < $b ]] && echo "wan-$a-$b" || echo "wan-$b-$a"
}

cmd=${1:-help}
shift || true
case $cmd in
  isolate)
    id=$(container_of "$(region "${1:-}")")
    docker network disconnect "$(wan_of "$id")" "$id" ;;
  reconnect)
    r=$(region "${1:-}"); id=$(container_of "$r")
    # The alias restores the service name peers dial; a plain connect would lose it.
    docker network connect --alias "$r" "$(wan_of "$id")" "$id" ;;
  stop|start|pause|unpause|restart)
    compose "$cmd" "$(region "${1:-}")" ;;
  kill)
    compose kill -s SIGKILL "$(region "${1:-}")" ;;
  crash)
    # Every process of the container but its init (which then exits with the region's status); kill(-1) spares the caller.
    # The container ends with the region, taking this command along: 137 is the expected status.
    docker exec "$(container_of "$(region "${1:-}")")" node -e 'process.kill(-1, "SIGKILL")' || [[ $? -eq 137 ]] ;;
  wipe)
    r=$(region "${1:-}"); id=$(container_of "$r")
    volume=$(docker inspect -f '{{ range .Mounts }}{{ if eq .Destination "/data" }}{{ .Name }}{{ end }}{{ end }}' "$id")
    [[ -n $volume ]] || die "no /data volume on $r"
    compose rm -s -f "$r"
    docker volume rm "$volume" >/dev/null
    compose up -d --no-deps "$r" ;;
  link)
    [[ $# -ge 3 ]] || die 'usage: link A B FAULT, e.g. link eu-west us-east "latency 100ms ±20ms"'
    service=$(link_service "$1" "$2"); shift 2
    proxy_call "$service" POST "$*" ;;
  links)
    for service in $(compose config --services | grep '^wan-'); do
      echo "$service: $(proxy_call "$service" GET)"
    done ;;
  sync)
    r=$(region "${1:-}"); port=$(port_of "$r")
    docker exec "$(container_of "$r")" node -e '
      fetch(process.argv[1]).then(async (r) => { console.log(await r.text()); process.exit(r.ok ? 0 : 1); }, (e) => { console.error(e.message); process.exit(1); });
    ' "http://127.0.0.1:$port/v1/sync" ;;
  up)
    base=$(scripts/docker-base.sh)
    MERIDIAN_BASE_IMAGE=$base compose up -d --build
    for r in $(regions); do wait_healthy "$r"; done ;;
  down)
    case ${1:-} in
      --wipe) compose down --volumes ;;
      '') compose down ;;
      *) die "usage: down [--wipe]" ;;
    esac ;;
  url)
    r=$(region "${1:-}")
    echo "http://$(compose port "$r" "$(port_of "$r")" | tail -n1 | sed 's/^0\.0\.0\.0:/127.0.0.1:/')" ;;
  wait) wait_healthy "$(region "${1:-}")" ;;
  regions) regions ;;
  help|-h|--help) usage ;;
  *) usage >&2; exit 64 ;;
esac
