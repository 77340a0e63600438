#!/usr/bin/env bash
# The README's main job on the embedded CPU default: generates a small model,
# starts a controller and two CPU engines on 127.0.0.1 (ephemeral ports), and
# runs the demo trainer (//controller/demo:colo-demo-trainer) for CYCLES
# colocated cycles (default 3): rollout through Generate on every engine ->
# PrepareTraining (pause, release weights/kv_cache/cuda_graph, verified) ->
# train (the trainer's own memory, new weights written as a checkpoint) ->
# BeginWeightSync (resume weights only) -> Gloo broadcast from the trainer
# (rank 0) -> FinishWeightSync (resume kv_cache/cuda_graph, continue). It
# prints each cycle's timeline (durations, per-engine memory, the rollouts'
# weight_version) and `coloctl status`, then stops everything with SIGTERM.
#
# Environment: CYCLES (3), KEEP_WORKDIR=1 keeps the model, checkpoints and
# logs; TP_SIZE=N (1) runs every engine with N tensor-parallel ranks (rank 0
# starts the others; one compute thread each; the weight-sync group then
# spans 1 + 2N ranks); BAZEL (bazel), BAZEL_STARTUP_FLAGS (e.g. --output_base=...) and
# BAZEL_BUILD_FLAGS (e.g. --jobs=2); COLO_BIN=DIR uses prebuilt binaries laid
# out like bazel-bin instead of building (//deploy:run_local_smoke_test).
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES="${CYCLES:-3}"
TP_SIZE="${TP_SIZE:-1}"
tp_flags=()
if [ "$TP_SIZE" != 1 ]; then tp_flags=(--tp_size="$TP_SIZE" --cpu_threads=1); fi
BAZEL="${BAZEL:-bazel}"
read -r -a STARTUP <<<"${BAZEL_STARTUP_FLAGS:-}"
read -r -a BUILD_FLAGS <<<"${BAZEL_BUILD_FLAGS:-}"
TARGETS=(//engine/server:colo-engine //controller:colo-controller //controller:coloctl
  //controller/demo:colo-demo-trainer //engine/model:colo-tiny-model)
if [ -n "${COLO_BIN:-}" ]; then
  BIN="$COLO_BIN"  # prebuilt binaries in the bazel-bin layout (the smoke test's runfiles)
else
  "$BAZEL" "${STARTUP[@]}" build "${BUILD_FLAGS[@]}" "${TARGETS[@]}"
  BIN="$("$BAZEL" "${STARTUP[@]}" info bazel-bin 2>/dev/null)"
fi

work=$(mktemp -d /tmp/colo-run.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Bounded drain: SIGKILL whatever has not exited after 10 s.
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "== run failed (exit $rc); last log lines:" >&2
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "-- $f" >&2; tail -n 5 "$f" >&2; }; done
  fi
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {  # bounded wait (30 s) for a server's --port_file; fails if the server died
  local file="$1" pid="$2"
  for _ in $(seq 1 300); do
    [ -s "$file" ] && { cat "$file"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "server for $file exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for $file" >&2
  return 1
}

echo "== generating a small model (llama, 4 layers, hidden 256, vocab 4096)"
"$BIN/engine/model/colo-tiny-model" --out="$work/model" --arch=llama --layers=4 --hidden=256 \
  --heads=4 --kv_heads=2 --vocab=4096 --seed=7

engines=()
for i in 0 1; do
  "$BIN/engine/server/colo-engine" --model="$work/model" --device=cpu --kv_cache_bytes=16777216 \
    "${tp_flags[@]}" --port_file="$work/engine$i.port" 2>"$work/engine$i.log" &
  pid=$!
  pids+=("$pid")
  engines+=("127.0.0.1:$(wait_port "$work/engine$i.port" "$pid")")
done
"$BIN/controller/colo-controller" --engines="$(IFS=,; echo "${engines[*]}")" \
  --journal="$work/journal" --weight_sync_master_port=0 \
  --port_file="$work/controller.port" 2>"$work/controller.log" &
pid=$!
pids+=("$pid")
ctl="127.0.0.1:$(wait_port "$work/controller.port" "$pid")"
echo "== controller $ctl, engines ${engines[*]} ($TP_SIZE tensor-parallel rank(s) each)"
"$BIN/controller/coloctl" --controller="$ctl" status

echo "== demo trainer: $CYCLES colocated cycles"
timeout 600 "$BIN/controller/demo/colo-demo-trainer" --controller="$ctl" --model="$work/model" \
  --checkpoint_dir="$work/checkpoints" --cycles="$CYCLES"

echo "== coloctl status"
"$BIN/controller/coloctl" --controller="$ctl" status
