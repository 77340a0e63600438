"""Import first in every test: re-executes the test under Debian's
/usr/bin/python3 (python3-grpcio, python3-protobuf, python3-torch) when Bazel
started it with another python3 from PATH (e.g. a pyenv shim). The Bazel
stub's PYTHONPATH (runfiles) is kept."""

import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"

if (os.path.exists(SYSTEM_PYTHON)
        and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
        and not os.environ.get("COLO_REEXECED")):
    os.environ["COLO_REEXECED"] = "1"
    os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
