"""Runs examples/example_trainer.py for 3 cycles against a real controller
and two real engines and checks the weight versions it reports: cycle k
generates on the weights of cycle k-1 and leaves every engine on step-k."""

import system_python  # noqa: F401  (first: re-exec under /usr/bin/python3)

import json
import os
import subprocess
import sys
import unittest

from colo_client import ControllerClient, EngineClient
from local_cluster import LocalCluster

CYCLES = 3


def example_path():
    for root in (os.environ.get("TEST_SRCDIR", ""), os.environ.get("RUNFILES_DIR", "")):
        path = os.path.join(root, "colo", "clients", "python", "examples", "example_trainer.py")
        if root and os.path.exists(path):
            return path
    return os.path.join(os.path.dirname(__file__), "..", "examples", "example_trainer.py")


class ExampleTrainerTest(unittest.TestCase):

    def test_three_cycles_report_the_weight_versions(self):
        with LocalCluster(num_engines=2) as cluster:
            initial = [EngineClient(a).get_server_info().weight_version
                       for a in cluster.engine_addresses]
            run = subprocess.run(
                [sys.executable, example_path(), f"--controller={cluster.controller.address}",
                 f"--model_dir={cluster.model_dir}", f"--cycles={CYCLES}", "--train_mb=16",
                 "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
            self.assertEqual(run.returncode, 0,
                             f"stderr:\n{run.stderr.decode()}\nlogs:\n{cluster.logs()}")
            reports = [json.loads(line) for line in run.stdout.decode().splitlines()]
            self.assertEqual([r["cycle"] for r in reports], list(range(1, CYCLES + 1)))
            previous = initial
            for r in reports:
                self.assertEqual(r["rollout_weight_versions"], previous, r)
                self.assertEqual(r["new_weight_version"], f"step-{r['step']}")
                self.assertEqual(r["engine_weight_versions"], [r["new_weight_version"]] * 2)
                self.assertEqual(r["phase"], "ROLLOUT")
                # Same machine and IPC namespace: the controller picks the
                # shared-memory handoff for both engines.
                self.assertEqual(r["handoff"], ["ipc", "ipc"])
                previous = r["engine_weight_versions"]
            self.assertEqual([r["step"] for r in reports], [1, 2, 3])
            # What the engines and the controller say afterwards.
            for address in cluster.engine_addresses:
                self.assertEqual(EngineClient(address).get_server_info().weight_version, "step-3")
            state = ControllerClient(cluster.controller.address).get_state()
            self.assertEqual((state.phase, state.step), ("ROLLOUT", 3))
            # New weights change greedy outputs between cycles 1 and 2.
            self.assertNotEqual(reports[0]["rollout_tokens"], reports[1]["rollout_tokens"])


if __name__ == "__main__":
    unittest.main()
