#!/usr/bin/env bash
# Installs what the test suite needs beyond npm packages, when it is missing:
# Debian's chromium (browser tests through playwright-core), redis-server (the Redis engine
# and cluster tests start their own on free ports) and python3-websockets (the independent
# protocol client). Runs before `npm test` (the `pretest` script).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import websockets' 2>/dev/null; } || need+=(python3-websockets)

if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]} with apt-get" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -d node_modules ] || npm ci
