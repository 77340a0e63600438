#!/bin/bash
# pip-installs clients/python (no network, no build isolation, Debian's
# setuptools) into a temporary prefix and imports the package from there.
set -euo pipefail
SRC="$TEST_SRCDIR/colo"
WORK="$(mktemp -d "${TEST_TMPDIR:-/tmp}/pip.XXXXXX")"
# A writable copy with the layout pip sees in the repository.
mkdir -p "$WORK/repo/clients" "$WORK/repo/proto/colo/v1"
cp -rL "$SRC/clients/python" "$WORK/repo/clients/python"
cp -L "$SRC"/proto/colo/v1/*.proto "$WORK/repo/proto/colo/v1/"
rm -rf "$WORK/repo/clients/python/tests" "$WORK/repo/clients/python/examples"
/usr/bin/python3 -m pip install --quiet --no-build-isolation --no-index --no-deps \
  --disable-pip-version-check --root-user-action=ignore --break-system-packages --target "$WORK/site" \
  "$WORK/repo/clients/python"
cd "$WORK"
PYTHONPATH="$WORK/site" /usr/bin/python3 - <<'PY'
import colo_client, colo.v1.engine_pb2 as engine_pb2
from colo_client import ControllerClient, EngineClient, FailedPreconditionError
assert colo_client.__file__.startswith(__import__("os").environ["PYTHONPATH"]), colo_client.__file__
assert engine_pb2.WeightChunk.DESCRIPTOR.fields_by_name["commit"]
print("installed", colo_client.__version__, "from", colo_client.__file__)
PY
