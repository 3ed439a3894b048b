#!/usr/bin/env bash
# The newcomer's path as CI runs it: a fresh clone of HEAD in a temporary folder, an empty HOME,
# no display and no keyring backend, then `bash scripts/demo.sh` and a value from `lithotse serve`.
# Needs git and python3 (standard library only). Details: scripts/newcomer_check.py.
set -euo pipefail
exec python3 "$(dirname "$0")/newcomer_check.py" "$@"
