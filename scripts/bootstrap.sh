#!/usr/bin/env bash
# Installs what the workers and their tests need on Debian/Ubuntu: FFmpeg,
# PostgreSQL (server binaries for the test cluster), a Python venv in .venv
# with the runtime and test requirements. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)  # unit checks in the tests
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)        # clock-jump test
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)              # scripts/deploy.sh
# The web app's players, played in headless Chromium (tests/players.py).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
echo "==> pip install -r requirements-dev.txt"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt

# hls.js and Shaka Player at the web app's versions (tests/player/package-lock.json).
if [ ! -d tests/player/node_modules/shaka-player ] \
   || [ tests/player/package-lock.json -nt tests/player/node_modules/.package-lock.json ]; then
  echo "==> npm ci (tests/player: hls.js, shaka-player)"
  (cd tests/player && npm ci --no-audit --no-fund --loglevel=error)
fi

# The lowest versions requirements.txt allows (what an old Jetson may run):
# a venv of their own, for tests/acceptance/test_floors.py.
if [ ! -x .venv-floors/bin/python ]; then
  echo "==> creating .venv-floors"
  python3 -m venv .venv-floors
fi
echo "==> pip install -r requirements-floors.txt (into .venv-floors)"
.venv-floors/bin/python -m pip install -q --disable-pip-version-check -r requirements-floors.txt
