#!/usr/bin/env bash
# The README's main job on the embedded CPU default: generates a small model,
# starts a controller and two CPU engines on 127.0.0.1 (ephemeral ports),
# runs what the engines can do today (an offline greedy generation on the
# model, then `coloctl status`), and stops everything with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
bazel build //engine/server:colo-engine //controller:colo-controller //controller:coloctl \
  //engine/model:colo-tiny-model //engine/model:colo-generate-offline
BIN=bazel-bin
work=$(mktemp -d /tmp/colo-run.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {  # bounded wait for a server's --port_file
  for _ in $(seq 1 300); do [ -s "$1" ] && { cat "$1"; return 0; }; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

"$BIN/engine/model/colo-tiny-model" --out="$work/model" --arch=llama --layers=2 --hidden=64 \
  --heads=4 --kv_heads=2 --vocab=256 --seed=7
echo "== offline greedy generation on the generated model"
"$BIN/engine/model/colo-generate-offline" --model_dir="$work/model" --prompts="1,2,3,4;5,6,7" \
  --max_new_tokens=8

engines=()
for i in 0 1; do
  "$BIN/engine/server/colo-engine" --model="$work/model" --device=cpu \
    --port_file="$work/engine$i.port" 2>"$work/engine$i.log" &
  pids+=($!)
  engines+=("127.0.0.1:$(wait_port "$work/engine$i.port")")
done
"$BIN/controller/colo-controller" --engines="$(IFS=,; echo "${engines[*]}")" \
  --journal="$work/journal" --port_file="$work/controller.port" 2>"$work/controller.log" &
pids+=($!)
ctl="127.0.0.1:$(wait_port "$work/controller.port")"
echo "== coloctl status (controller $ctl, engines ${engines[*]})"
"$BIN/controller/coloctl" --controller="$ctl" status || true
