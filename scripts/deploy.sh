#!/usr/bin/env bash
# Deploy this tree to the Jetson: rsync (never .env, caches, venvs or local
# output), then on the device install the requirements only if they changed,
# copy the systemd units only if they differ from the installed ones (then
# daemon-reload), restart the services whose code changed, show their status.
#
#   JETSON_HOST=scribe@192.168.1.50 scripts/deploy.sh            # deploy
#   JETSON_HOST=scribe@192.168.1.50 scripts/deploy.sh --dry-run  # say what would happen
#
# JETSON_DIR (default /home/scribe/rugbycodex/jetson_scripts) is where the code
# lives on the device; SYSTEMD_UNIT_DIR (default /etc/systemd/system) where the
# units are installed. JETSON_HOST=local deploys on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run|-n) dry_run=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deploy.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
host="${JETSON_HOST:-}"
dir="${JETSON_DIR:-/home/scribe/rugbycodex/jetson_scripts}"
unit_dir="${SYSTEMD_UNIT_DIR:-/etc/systemd/system}"
if [ -z "$host" ]; then
  echo "deploy.sh: set JETSON_HOST (e.g. scribe@192.168.1.50, or local)" >&2
  exit 2
fi
units=(rugbycodex-transcoder-sqs.service rugbycodex-cleanup.service)

on_device() {  # one shell command on the Jetson
  if [ "$host" = local ]; then bash -c "$1"; else ssh "$host" "$1"; fi
}
target() { if [ "$host" = local ]; then echo "$dir/"; else echo "$host:$dir/"; fi; }

excludes=(
  --exclude=.env --exclude='.env.*.local' --exclude=.git/ --exclude=.venv/ --exclude=venv/
  --exclude=__pycache__/ --exclude='*.pyc' --exclude=.pytest_cache/ --exclude=.ruff_cache/
  --exclude=.mypy_cache/ --exclude=node_modules/ --exclude=demo-output/ --exclude=bench/out/
)
# .env.example is the template and goes; the real .env never does.
rsync_args=(-rlptz --itemize-changes --include=.env.example "${excludes[@]}")

on_device "mkdir -p '$dir'"
changes=$(rsync --dry-run "${rsync_args[@]}" ./ "$(target)" | awk '$1 ~ /^[<>ch.]f/ {print $2}')
echo "==> files that differ on the device:"
if [ -n "$changes" ]; then printf '    %s\n' $changes; else echo "    (none)"; fi

restart=()
touches() { grep -Eq "$1" <<<"$changes"; }
if touches '^(utils/|requirements\.txt$)'; then
  restart=(rugbycodex-transcoder-sqs rugbycodex-cleanup)
else
  touches '^streaming/' && restart+=(rugbycodex-transcoder-sqs)
  touches '^cleanup/' && restart+=(rugbycodex-cleanup)
fi
install_requirements=0
touches '^requirements\.txt$' && install_requirements=1

changed_units=()
for unit in "${units[@]}"; do
  # Compared with the installed copy, not only with the device's tree: a unit
  # rsynced earlier but never installed is installed now.
  if ! on_device "cmp -s $unit_dir/$unit '$dir/$unit' 2>/dev/null" || touches "^$unit\$"; then
    changed_units+=("$unit")
    service="${unit%.service}"
    [[ " ${restart[*]-} " == *" $service "* ]] || restart+=("$service")
  fi
done

echo "==> requirements: $([ $install_requirements = 1 ] && echo "changed: pip install" || echo unchanged)"
echo "==> units to install: ${changed_units[*]:-(none)}"
echo "==> services to restart: ${restart[*]:-(none)}"
if [ $dry_run = 1 ]; then
  echo "==> dry run: nothing was changed"
  exit 0
fi

rsync "${rsync_args[@]}" ./ "$(target)" >/dev/null
if [ $install_requirements = 1 ]; then
  on_device "cd '$dir' && python3 -m pip install --user -r requirements.txt"
fi
if [ ${#changed_units[@]} -gt 0 ]; then
  for unit in "${changed_units[@]}"; do
    on_device "sudo cp '$dir/$unit' $unit_dir/$unit"
  done
  on_device "sudo systemctl daemon-reload"
fi
if [ ${#restart[@]} -gt 0 ]; then
  on_device "sudo systemctl restart ${restart[*]}"
fi
on_device "systemctl status --no-pager --lines=5 ${units[*]%.service} || true"
