#!/usr/bin/env bash
# Installs what the test suite needs beyond npm packages, when it is missing:
# Debian's chromium (browser tests through playwright-core), redis-server (the Redis engine
# and cluster tests start their own on free ports), and for Debian's /usr/bin/python3:
# python3-websockets + python3-msgpack (the independent protocol clients) and
# python3-fastapi + python3-uvicorn + python3-httpx (the example backend in examples/fastapi).
# Runs before `npm test` (the `pretest` script).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
py_has() { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $1" 2>/dev/null; }
py_has websockets || need+=(python3-websockets)
py_has msgpack || need+=(python3-msgpack)
py_has fastapi || need+=(python3-fastapi)
py_has uvicorn || need+=(python3-uvicorn)
py_has httpx || need+=(python3-httpx)

if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]} with apt-get" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -d node_modules ] || npm ci
