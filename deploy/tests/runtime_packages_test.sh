#!/bin/bash
# docker/runtime_packages.sh over the real binaries: names the Debian
# packages of the gRPC, protobuf and Abseil runtime libraries, one per line.
set -euo pipefail
R="$TEST_SRCDIR/colo"
out="$("$R/deploy/docker/runtime_packages.sh" "$R/engine/server/colo-engine" \
  "$R/controller/colo-controller" "$R/engine/model/colo-tiny-model")"
echo "$out"
for want in libgrpc++1.51 libprotobuf32 libabsl20220623 libc6 libstdc++6; do
  grep -qx "$want" <<<"$out" || { echo "FAIL: $want missing"; exit 1; }
done
# Every line is an installed package.
while read -r pkg; do
  dpkg-query -W -f='${Status}' "$pkg" | grep -q "install ok installed" \
    || { echo "FAIL: '$pkg' is not an installed package"; exit 1; }
done <<<"$out"
# Usage error without arguments.
if "$R/deploy/docker/runtime_packages.sh" 2>/dev/null; then echo "FAIL: no usage error"; exit 1; fi
echo PASS
