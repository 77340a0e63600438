#!/bin/bash
# Runs the transformers parity check (tests/parity/hf_parity_test.py) under
# the test venv (/opt/colo/venv: torch 2.15, transformers 5.x, made by
# bazel/setup.sh) with the Bazel-built colo binaries and the colo_client
# package from the runfiles.
set -euo pipefail
VENV_PYTHON=/opt/colo/venv/bin/python3
if [[ ! -x "$VENV_PYTHON" ]]; then
  echo "FAIL: $VENV_PYTHON missing: run bazel/setup.sh" >&2
  exit 1
fi
ROOT="$TEST_SRCDIR/colo"
export PYTHONPATH="$ROOT/clients/python:$ROOT/clients/python/gen:$ROOT/clients/python/tests"
export OMP_NUM_THREADS=1
exec "$VENV_PYTHON" "$ROOT/tests/parity/hf_parity_test.py" \
  "$ROOT/engine/model/colo-tiny-model" \
  "$ROOT/engine/server/colo-engine"
