#!/usr/bin/env bash
# README command 2: set everything up and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh --test
# npm packages of the Medplum FHIR server that the fhir-rest tests run, exactly as locked, and the
# Office add-in's test and build tools (custom-functions-metadata, office-addin-mock, playwright-core).
# Run inside each folder, not with --prefix: --prefix also moves npm's global config to
# <folder>/etc/npmrc, so a machine's own npm settings (its cafile behind a TLS-inspecting proxy)
# would be ignored.
(cd tests/plugins/fhir/medplum && npm ci --no-audit --no-fund --loglevel=error)
(cd addin && npm ci --no-audit --no-fund --loglevel=error)
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
mkdir -p .ci-work
status=0
# the tier contracts of pyproject.toml [tool.importlinter] (docs/architecture.md)
.venv/bin/lint-imports --no-cache || status=$?
# lint and type checks of pyproject.toml [tool.ruff] and [tool.mypy]; each prints what it finds
.venv/bin/ruff check || status=$?
.venv/bin/mypy || status=$?
# one test worker per core, at most four (each starts its own S3, Redis and API servers);
# LITHOTSE_TEST_WORKERS=0 runs everything in this process. Tests of one xdist_group share a worker.
workers=${LITHOTSE_TEST_WORKERS:-$(nproc)}
if [ "$workers" -gt 4 ]; then workers=4; fi
.venv/bin/python -m pytest -p no:cacheprovider -n "$workers" --dist loadgroup "$@" || status=$?
.venv/bin/lithotse sof-test tests/data/sql-on-fhir-v2 --report .ci-work/sof-report.json || status=$?
exit $status
