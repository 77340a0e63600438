#!/bin/bash
# Black-box checks of the colo-controller and coloctl binaries: flag errors
# exit 2 with one line, the server starts with --port_file, answers coloctl,
# keeps its journal across a restart, and drains on SIGTERM with exit 0.
set -u
CONTROLLER="$1"
COLOCTL="$2"
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*"; exit 1; }

expect_usage_error() {  # expected-substring, args...
  local want="$1"; shift
  local out rc
  out="$("$CONTROLLER" "$@" 2>&1)"; rc=$?
  [ "$rc" -ne 0 ] || fail "colo-controller $* exited 0"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "colo-controller $*: more than one line: $out"
  case "$out" in *"$want"*) ;; *) fail "colo-controller $*: '$out' lacks '$want'";; esac
}
expect_usage_error "Unknown command line flag 'bogus'" --bogus=1
expect_usage_error "no engines given" --port=0
expect_usage_error "--verify_fraction must be in (0, 1]" --engines=127.0.0.1:1 --verify_fraction=1.5
expect_usage_error "--weight_sync_backend must be gloo or nccl" --engines=127.0.0.1:1 --weight_sync_backend=mpi
expect_usage_error "not a loopback address" --engines=127.0.0.1:1 --host=0.0.0.0
expect_usage_error "is not host:port" --engines=nohost
expect_usage_error "unexpected argument" --engines=127.0.0.1:1 extra
expect_usage_error "Illegal value" --engines=127.0.0.1:1 --health_interval=soon

start() {  # extra controller flags...
  rm -f "$TMP/port"
  "$CONTROLLER" --engines=127.0.0.1:1 --port_file="$TMP/port" --journal="$TMP/journal" \
      --health_interval=100ms --health_timeout=200ms "$@" 2>"$TMP/log" &
  PID=$!
  for _ in $(seq 200); do [ -s "$TMP/port" ] && break; sleep 0.05; done
  [ -s "$TMP/port" ] || fail "no port file; log: $(cat "$TMP/log")"
  ADDR="127.0.0.1:$(cat "$TMP/port")"
}

start
# The engine is unreachable: the node goes FAILED naming it.
failed=0
for _ in $(seq 100); do
  if "$COLOCTL" --controller="$ADDR" status --timeout=5s | grep -q "phase   FAILED"; then failed=1; break; fi
  sleep 0.05
done
[ "$failed" -eq 1 ] || fail "node never FAILED"
"$COLOCTL" --controller="$ADDR" status --output=json | grep -q '"reason":"engine 127.0.0.1:1 lost' \
  || fail "json status lacks the reason"
out="$("$COLOCTL" --controller="$ADDR" cycle 2>&1)"; rc=$?
[ "$rc" -eq 1 ] || fail "cycle on a FAILED node exited $rc"
case "$out" in "error: FAILED_PRECONDITION: PrepareTraining needs phase ROLLOUT, node is in FAILED"*) ;;
  *) fail "cycle error: $out";; esac
"$COLOCTL" --controller="$ADDR" bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "coloctl usage error is not 2"
kill -TERM "$PID"; wait "$PID"; rc=$?
[ "$rc" -eq 0 ] || fail "SIGTERM exit $rc; log: $(cat "$TMP/log")"

# Restart: the journal brings back the FAILED phase and its reason.
start
"$COLOCTL" --controller="$ADDR" status | grep -q "reason  engine 127.0.0.1:1 lost" \
  || fail "restart lost the journaled reason"
kill -TERM "$PID"; wait "$PID" || fail "second SIGTERM exit non-zero"

# TLS + bearer token.
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 || fail "openssl"
  echo "s3cret" > "$TMP/token"
  echo "wrong" > "$TMP/wrong"
  start --tls_cert="$TMP/cert.pem" --tls_key="$TMP/key.pem" --auth_token_file="$TMP/token"
  CTL=("$COLOCTL" --controller="$ADDR" --tls_ca="$TMP/cert.pem" --timeout=5s)
  "${CTL[@]}" status >/dev/null || fail "TLS status failed"
  "$COLOCTL" --controller="$ADDR" --timeout=2s status >/dev/null 2>&1 && fail "plaintext to a TLS server worked"
  out="$("${CTL[@]}" pause --mode=abort 2>&1)"
  case "$out" in "error: UNAUTHENTICATED"*) ;; *) fail "pause without token: $out";; esac
  out="$("${CTL[@]}" --auth_token_file="$TMP/wrong" recover 2>&1)"
  case "$out" in "error: UNAUTHENTICATED"*) ;; *) fail "recover with a wrong token: $out";; esac
  # With the token the call reaches the (unreachable) engine.
  out="$("${CTL[@]}" --auth_token_file="$TMP/token" pause --mode=abort 2>&1)"
  case "$out" in "127.0.0.1:1: error: UNAVAILABLE"*) ;; *) fail "pause with token: $out";; esac
  kill -TERM "$PID"; wait "$PID" || fail "TLS SIGTERM exit non-zero"
  echo "TLS and token checks passed"
fi
echo PASS
