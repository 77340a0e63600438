#!/bin/bash
# Runs the fuzz target on seeded pseudo-random inputs (no libFuzzer needed).
set -euo pipefail
"$1" --random=300
