#!/bin/bash
# Runs the transformers parity check with the Bazel-built colo binaries.
set -euo pipefail
exec /usr/bin/python3 "$TEST_SRCDIR/colo/tests/parity/hf_parity_test.py" \
  "$TEST_SRCDIR/colo/engine/model/colo-tiny-model" \
  "$TEST_SRCDIR/colo/engine/model/colo-generate-offline"
