"""Real colo processes for the client tests: a generated tiny model, engines
and a controller on 127.0.0.1 with ephemeral ports (--port=0 --port_file),
stopped with SIGTERM. Binaries come from the Bazel runfiles (or
$COLO_BIN_DIR, laid out like bazel-bin)."""

import os
import signal
import subprocess
import tempfile
import time
from typing import List, Optional

from colo_client import ControllerClient, EngineClient

START_TIMEOUT_S = 30.0


def binary(relpath: str) -> str:
    """Path of a colo binary, e.g. binary("controller/colo-controller")."""
    roots = []
    if os.environ.get("COLO_BIN_DIR"):
        roots.append(os.environ["COLO_BIN_DIR"])
    if os.environ.get("TEST_SRCDIR"):
        roots.append(os.path.join(os.environ["TEST_SRCDIR"], "colo"))
    if os.environ.get("RUNFILES_DIR"):
        roots.append(os.path.join(os.environ["RUNFILES_DIR"], "colo"))
    for root in roots:
        path = os.path.join(root, relpath)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{relpath} not found under {roots} (run under bazel test, "
                            "or set COLO_BIN_DIR to a bazel-bin)")


class Process:
    """One server started with --port=0 --port_file; `address` is
    127.0.0.1:PORT once started."""

    def __init__(self, name: str, argv: List[str], workdir: str):
        self.name = name
        self.port_file = os.path.join(workdir, f"{name}.port")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv + ["--port=0", f"--port_file={self.port_file}"],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.address = f"127.0.0.1:{self._wait_port()}"

    def _wait_port(self) -> int:
        # The server writes the port file atomically (write + rename) once it
        # serves; poll it with a bounded deadline, failing fast if it exits.
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()}")
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: no port file after {START_TIMEOUT_S}s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """SIGTERM and wait; SIGKILL after `timeout`. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (a crashed server)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)


def make_tiny_model(out_dir: str, dtype: str = "f32") -> str:
    """A small llama-layout model with deterministic weights."""
    subprocess.run([binary("engine/model/colo-tiny-model"), f"--out={out_dir}", "--arch=llama",
                    "--layers=2", "--hidden=64", "--heads=4", "--kv_heads=2", "--vocab=256",
                    "--seed=7", f"--dtype={dtype}"],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return out_dir


class LocalCluster:
    """A model, `num_engines` CPU engines and (optionally) a controller.
    Use as a context manager; every process is stopped on exit."""

    def __init__(self, num_engines: int = 2, controller: bool = True,
                 controller_flags: Optional[List[str]] = None,
                 engine_flags: Optional[List[str]] = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="colo-client-",
                                                dir=os.environ.get("TEST_TMPDIR"))
        self.workdir = self._tmp.name
        self.engines: List[Process] = []
        self.controller: Optional[Process] = None
        self.model_dir = ""
        self._num_engines = num_engines
        self._with_controller = controller
        self._controller_flags = controller_flags or []
        self._engine_flags = engine_flags or []

    def __enter__(self) -> "LocalCluster":
        try:
            self.model_dir = make_tiny_model(os.path.join(self.workdir, "model"))
            for i in range(self._num_engines):
                self.engines.append(Process(
                    f"engine{i}", [binary("engine/server/colo-engine"), f"--model={self.model_dir}",
                                   "--device=cpu"] + self._engine_flags, self.workdir))
            for e in self.engines:
                with EngineClient(e.address) as client:
                    client.wait_ready(START_TIMEOUT_S)
            if self._with_controller:
                self.start_controller()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start_controller(self) -> Process:
        engines = ",".join(e.address for e in self.engines)
        self.controller = Process(
            "controller", [binary("controller/colo-controller"), f"--engines={engines}",
                           f"--journal={os.path.join(self.workdir, 'journal')}"]
            + self._controller_flags, self.workdir)
        with ControllerClient(self.controller.address) as client:
            client.wait_ready(START_TIMEOUT_S)
        return self.controller

    @property
    def engine_addresses(self) -> List[str]:
        return [e.address for e in self.engines]

    def logs(self) -> str:
        procs = self.engines + ([self.controller] if self.controller else [])
        return "\n".join(f"--- {p.name}\n{p.log()}" for p in procs)

    def __exit__(self, *exc) -> None:
        procs = ([self.controller] if self.controller else []) + self.engines
        for p in procs:
            p.stop()
        self._tmp.cleanup()
