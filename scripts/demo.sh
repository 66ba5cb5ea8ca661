#!/usr/bin/env bash
# Installs everything, starts a local stand-in for the live system (moto for
# SQS + Wasabi, PostgreSQL behind a PostgREST-compatible gateway), queues a
# generated match clip, runs the transcoder with --once and shows the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
