"""Import first in a test that needs PyPI's current torch (torch.distributed
interop tests): re-executes the test under the test venv's python
(/opt/colo/venv, made by bazel/setup.sh from tests/python/requirements.txt;
it also sees Debian's python3-grpcio/protobuf). The Bazel stub's PYTHONPATH
(runfiles) is kept. Fails with a clear message when the venv is missing."""

import os
import sys

VENV_PYTHON = os.environ.get("COLO_VENV_PYTHON", "/opt/colo/venv/bin/python3")

if not os.path.exists(VENV_PYTHON):
    raise SystemExit(f"{VENV_PYTHON} is missing: run `bash bazel/setup.sh` (it creates the test "
                     "venv with torch 2.15 from tests/python/requirements.txt)")
# The venv's python is a symlink to /usr/bin/python3: compare prefixes.
VENV_DIR = os.path.dirname(os.path.dirname(VENV_PYTHON))
if os.path.realpath(sys.prefix) != os.path.realpath(VENV_DIR) \
        and not os.environ.get("COLO_REEXECED_VENV"):
    os.environ["COLO_REEXECED_VENV"] = "1"
    os.execv(VENV_PYTHON, [VENV_PYTHON] + sys.argv)
