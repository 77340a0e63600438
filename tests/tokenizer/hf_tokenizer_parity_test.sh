#!/bin/bash
# Runs the tokenizer parity check (hf_tokenizer_parity_test.py) with the
# Bazel-built colo-tokenize under the test venv.
set -euo pipefail
PY=/opt/colo/venv/bin/python3
if ! "$PY" -c "import tokenizers, sentencepiece, transformers" 2>/dev/null; then
  echo "SKIP: $PY with tokenizers, sentencepiece and transformers is missing (run bazel/setup.sh)"
  exit 0
fi
exec "$PY" "$TEST_SRCDIR/colo/tests/tokenizer/hf_tokenizer_parity_test.py" \
  "$TEST_SRCDIR/colo/engine/tokenizer/colo-tokenize" \
  --tiny_model "$TEST_SRCDIR/colo/engine/model/colo-tiny-model" "$@"
