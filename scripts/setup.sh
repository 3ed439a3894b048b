#!/usr/bin/env bash
# Creates .venv with Lithotse (with its desktop app: the gui extra), its first-party plugins and
# (with --test) the test tools.
# Safe to run again: it only reinstalls when a pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Lithotse needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.lithotse-installed
sum=$(cat pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -c1-16)-$want_test
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  extras="[gui]"
  [ $want_test = 1 ] && extras="[gui,test]"
  args=(-e ".$extras")
  for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && args+=(-e "$plugin")
  done
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${args[@]}"
  echo "$sum" > "$stamp"
fi
