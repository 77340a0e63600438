"""Stock torch.distributed trainers updating real colo engines over torch
gloo groups (InitWeightsUpdateGroup rendezvous="torch"): PyPI torch 2.15
(the test venv) and Debian's torch 1.13, world sizes 2 and 3, the
init_process_group / new_group / SGLang init_custom_process_group patterns,
float32 and bfloat16, engine checksums equal to the trainer's tensors,
greedy tokens equal to an engine that loaded the same checkpoint from disk,
rejected updates that leave the group usable, a trainer killed mid-update,
and ListWeightsUpdateGroups."""

import json
import os
import socket
import subprocess
import sys
import time
import unittest

import venv_python  # noqa: F401  (re-executes under the test venv's torch)

from colo_client import EngineClient
from local_cluster import START_TIMEOUT_S, Process, binary

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINER = os.path.join(HERE, "torch_trainer.py")
DEBIAN_PYTHON = "/usr/bin/python3"
PROMPT = [3, 17, 42, 99, 5, 250, 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model(out_dir: str, seed: int, dtype: str = "f32") -> str:
    subprocess.run([binary("engine/model/colo-tiny-model"), f"--out={out_dir}", "--arch=llama",
                    "--layers=2", "--hidden=64", "--heads=4", "--kv_heads=2", "--vocab=256",
                    f"--seed={seed}", f"--dtype={dtype}"],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return out_dir


class TorchGroupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = os.environ.get("TEST_TMPDIR", "/tmp")
        cls.model_a = tiny_model(os.path.join(cls.tmp, "a"), seed=1)
        cls.model_b = tiny_model(os.path.join(cls.tmp, "b"), seed=2)
        cls.model_b16 = tiny_model(os.path.join(cls.tmp, "b16"), seed=3, dtype="bf16")
        cls.procs = []
        # Engines serving A (updated by the trainers) and references that
        # loaded B / B16 from disk.
        cls.engines = [cls.start(f"engine{i}", cls.model_a) for i in range(2)]
        cls.ref_b = cls.start("ref_b", cls.model_b)
        cls.ref_b16 = cls.start("ref_b16", cls.model_b16)

    @classmethod
    def start(cls, name: str, model: str) -> Process:
        p = Process(name, [binary("engine/server/colo-engine"), f"--model={model}",
                           "--device=cpu", "--weight_sync_transfer_timeout_ms=30000"], cls.tmp)
        cls.procs.append(p)
        with EngineClient(p.address) as c:
            c.wait_ready(START_TIMEOUT_S)
        return p

    @classmethod
    def tearDownClass(cls) -> None:
        for p in cls.procs:
            p.stop()

    def client(self, p: Process) -> EngineClient:
        c = EngineClient(p.address, timeout=120)
        self.addCleanup(c.close)
        return c

    def trainer(self, engines, updates, python=None, torch_group="world", group_name="weights",
                checkpoint=None, expect_exit=0, crc=True):
        """Runs torch_trainer.py; returns its events (JSON lines)."""
        python = python or sys.executable
        argv = [python, TRAINER, "--engines=" + ",".join(e.address for e in engines),
                f"--port={free_port()}", f"--torch_group={torch_group}",
                f"--group_name={group_name}", f"--checkpoint={checkpoint or self.model_b}",
                "--updates=" + ",".join(updates)]
        if crc:
            argv.append("--crc")
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                             env=dict(os.environ, TORCH_CPP_LOG_LEVEL="ERROR"))
        events = [json.loads(l) for l in out.stdout.decode().splitlines() if l.startswith("{")]
        if expect_exit is not None:
            self.assertEqual(out.returncode, expect_exit,
                             f"trainer: {out.stderr.decode()[-3000:]}\n{events}")
        return events

    def greedy(self, p: Process):
        return self.client(p).generate_tokens(PROMPT, max_new_tokens=12).output_ids

    def assert_holds(self, p: Process, crc, version, reference: Process) -> None:
        c = self.client(p)
        self.assertEqual(c.get_weight_checksums(), crc)
        self.assertEqual(c.get_server_info().weight_version, version)
        self.assertEqual(self.greedy(p), self.greedy(reference))
        self.assertEqual(c.get_weight_checksums(), self.client(reference).get_weight_checksums())

    def wait_group_gone(self, p: Process, name: str, timeout: float = 30.0) -> None:
        """Polls ListWeightsUpdateGroups (bounded) until `name` is gone."""
        deadline = time.monotonic() + timeout
        while True:
            groups = [g.group_name for g in self.client(p).list_weights_update_groups()]
            if name not in groups or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertNotIn(name, groups)

    def destroy(self, p: Process, name: str) -> None:
        try:
            self.client(p).destroy_weights_update_group(name)
        except Exception:  # noqa: BLE001 - may be gone already
            pass

    def test_torch215_world2_float32_then_bfloat16(self) -> None:
        e = self.engines[0]
        self.addCleanup(self.destroy, e, "w2")
        events = self.trainer([e], ["ok:float32:v1"], group_name="w2")
        self.assertEqual(events[0]["ranks"], [1])
        update = events[1]
        self.assertEqual(update["results"], [{"code": "OK", "message": ""}])
        self.assert_holds(e, update["crc"], "v1", self.ref_b)
        groups = self.client(e).list_weights_update_groups()
        self.assertEqual([(g.group_name, g.rendezvous, g.rank, g.world_size) for g in groups],
                         [("w2", "torch", 1, 2)])
        self.assertEqual(groups[0].updates, 1)
        # A second trainer run (new process, same group name: the old group's
        # trainer is gone) with bfloat16 tensors.
        self.destroy(e, "w2")
        events = self.trainer([e], ["ok:bfloat16:v2"], group_name="w2",
                              checkpoint=self.model_b16)
        self.assertEqual(events[1]["results"], [{"code": "OK", "message": ""}])
        self.assert_holds(e, events[1]["crc"], "v2", self.ref_b16)

    def test_torch215_world3_two_engines_each_pattern(self) -> None:
        for pattern in ("world", "new_group", "custom"):
            with self.subTest(pattern=pattern):
                name = f"w3_{pattern}"
                for e in self.engines:
                    self.addCleanup(self.destroy, e, name)
                version = f"v3_{pattern}"
                events = self.trainer(self.engines, [f"ok:float32:{version}",
                                                     f"ok:bfloat16:{version}b"],
                                      torch_group=pattern, group_name=name)
                self.assertEqual(events[0]["ranks"], [1, 2])
                self.assertEqual(events[1]["results"], [{"code": "OK", "message": ""}] * 2)
                self.assertEqual(events[2]["results"], [{"code": "OK", "message": ""}] * 2)
                for e in self.engines:
                    # The second update (bfloat16 of B) is what they hold.
                    self.assertEqual(self.client(e).get_weight_checksums(), events[2]["crc"])
                    self.assertEqual(self.client(e).get_server_info().weight_version,
                                     version + "b")
                for e in self.engines:
                    self.destroy(e, name)

    def test_rejected_updates_leave_the_group_usable(self) -> None:
        e = self.engines[0]
        self.addCleanup(self.destroy, e, "bad")
        self.client(e).update_weights_from_disk(self.model_a, "a")
        before = self.client(e).get_weight_checksums()
        events = self.trainer([e], ["wrong_name:float32:x1", "wrong_shape:float32:x2",
                                    "nan:float32:x3", "concurrent:float32:x4",
                                    "released:float32:x5", "ok:float32:x6"], group_name="bad")
        updates = {ev["kind"]: ev for ev in events if ev["event"] == "update"}
        # Every refused update left A in place.
        r = updates["wrong_name"]["results"][0]
        self.assertEqual(r["code"], "INVALID_ARGUMENT")
        self.assertIn('"model.nope.weight": unknown tensor', r["message"])
        r = updates["wrong_shape"]["results"][0]
        self.assertEqual(r["code"], "INVALID_ARGUMENT")
        self.assertIn("model has", r["message"])
        r = updates["nan"]["results"][0]
        self.assertEqual(r["code"], "INVALID_ARGUMENT")
        self.assertIn("element 3 (flat, row-major) is NaN", r["message"])
        # The concurrent second call is refused; the first one succeeds.
        first, second = updates["concurrent"]["results"]
        self.assertEqual(first["code"], "OK")
        self.assertEqual(second["code"], "FAILED_PRECONDITION")
        self.assertIn("one update at a time", second["message"])
        r = updates["released"]["results"][0]
        self.assertEqual(r["code"], "FAILED_PRECONDITION")
        self.assertIn("weights tag is released", r["message"])
        # Every refused update was drained: the group still works.
        self.assertEqual(updates["ok"]["results"][0]["code"], "OK")
        self.assert_holds(e, updates["ok"]["crc"], "x6", self.ref_b)
        self.assertNotEqual(before, updates["ok"]["crc"])

    def test_trainer_killed_mid_update_keeps_old_weights(self) -> None:
        e = self.engines[1]
        self.addCleanup(self.destroy, e, "kill")
        # Start from A (disk), then a trainer dies after 3 of the broadcasts.
        self.client(e).update_weights_from_disk(self.model_a, "a")
        before = self.client(e).get_weight_checksums()
        tokens_before = self.greedy(e)
        with EngineClient(e.address, timeout=120) as c:
            events = self.trainer([e], ["kill:3:float32:k1"], group_name="kill", expect_exit=None)
            # The trainer's process died (SIGKILL) before reporting the update;
            # the engine's RPC ended with ABORTED and it dropped the group.
            self.assertEqual([ev["event"] for ev in events], ["group"])
            # The engine's update fails as soon as the dead trainer's sockets
            # close, and the engine drops the dead group itself.
            self.wait_group_gone(e, "kill")
            self.assertEqual(c.get_weight_checksums(), before)
            self.assertEqual(self.greedy(e), tokens_before)
            self.assertEqual(c.get_server_info().weight_version, "a")
        # A new trainer forms the group with the same name at once.
        events = self.trainer([e], ["ok:float32:k2"], group_name="kill")
        self.assertEqual(events[1]["results"], [{"code": "OK", "message": ""}])
        self.assert_holds(e, events[1]["crc"], "k2", self.ref_b)

    @unittest.skipUnless(os.path.exists(DEBIAN_PYTHON), "no Debian python3")
    def test_debian_torch113_world3(self) -> None:
        # torch 1.13's gloo has no bfloat16 broadcast: float32 only.
        for pattern in ("world", "new_group"):
            with self.subTest(pattern=pattern):
                name = f"deb_{pattern}"
                for e in self.engines:
                    self.addCleanup(self.destroy, e, name)
                events = self.trainer(self.engines, ["ok:float32:d1", "nan:float32:d2"],
                                      python=DEBIAN_PYTHON, torch_group=pattern, group_name=name,
                                      crc=False)
                self.assertEqual(events[0]["ranks"], [1, 2])
                self.assertEqual(events[1]["results"], [{"code": "OK", "message": ""}] * 2)
                self.assertEqual([r["code"] for r in events[2]["results"]],
                                 ["INVALID_ARGUMENT"] * 2)
                for e in self.engines:
                    self.assertEqual(self.client(e).get_weight_checksums(),
                                     self.client(self.ref_b).get_weight_checksums())
                    self.assertEqual(self.greedy(e), self.greedy(self.ref_b))
                    self.destroy(e, name)


if __name__ == "__main__":
    unittest.main()
