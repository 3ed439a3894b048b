#!/usr/bin/env bash
# README command 1: set everything up and run Lithotse on the bundled demo workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lithotse demo --workspace "${LITHOTSE_DEMO_WORKSPACE:-demo-workspace}" "$@"
