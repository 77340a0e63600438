"""ControllerClient against a real colo-controller and two real colo-engines."""

import system_python  # noqa: F401  (first: re-exec under /usr/bin/python3)

import os
import time
import unittest

import grpc

from colo_client import (ColoError, ControllerClient, FailedPreconditionError,
                         UnauthenticatedError, UnavailableError)
from local_cluster import LocalCluster


class ControllerClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster(num_engines=2).__enter__()
        cls.client = ControllerClient(cls.cluster.controller.address, timeout=10.0)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.cluster.__exit__(None, None, None)

    def test_get_state_names_the_phase_and_engines(self):
        state = self.client.get_state()
        self.assertIn(state.phase, ("ROLLOUT", "FAILED"), state)
        self.assertEqual(sorted(e.address for e in state.engines),
                         sorted(self.cluster.engine_addresses))
        if state.phase == "FAILED":
            self.assertTrue(state.reason, "a FAILED node must carry a reason")

    def test_list_engines_returns_every_engine_in_rank_order(self):
        engines = self.client.list_engines()
        self.assertEqual([e.address for e in engines], self.cluster.engine_addresses)

    def test_wrong_phase_names_both_phases(self):
        state = self.client.get_state()
        with self.assertRaises(FailedPreconditionError) as ctx:
            self.client.finish_weight_sync(step=1)
        err = ctx.exception
        self.assertIsInstance(err, ColoError)
        self.assertEqual(err.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(err.method, "MemoryController/FinishWeightSync")
        text = str(err)
        self.assertIn("WEIGHT_SYNC", text)          # the phase the call needs
        self.assertIn(state.phase, text)            # the phase the node is in
        self.assertIn("FAILED_PRECONDITION", text)

    def test_begin_weight_sync_outside_training_is_refused(self):
        with self.assertRaises(FailedPreconditionError) as ctx:
            self.client.begin_weight_sync(step=1)
        self.assertIn("TRAINING", str(ctx.exception))

    def test_bad_pause_mode_is_rejected_before_sending(self):
        with self.assertRaises(ValueError):
            self.client.prepare_training(step=1, pause_mode="sideways")

    def test_watch_streams_the_current_state_first(self):
        first = next(iter(self.client.watch(timeout=10.0)))
        self.assertEqual(first.phase, self.client.get_state().phase)


class DeadControllerTest(unittest.TestCase):

    def test_dead_controller_raises_unavailable_promptly(self):
        with LocalCluster(num_engines=1) as cluster:
            client = ControllerClient(cluster.controller.address, timeout=5.0)
            client.get_state()  # alive
            cluster.controller.kill()
            start = time.monotonic()
            with self.assertRaises(UnavailableError) as ctx:
                client.get_state()
            elapsed = time.monotonic() - start
            self.assertEqual(ctx.exception.code, grpc.StatusCode.UNAVAILABLE)
            self.assertLess(elapsed, 5.0, "must fail fast, not wait for the deadline")
            # Transitions too, even with their long default deadline.
            start = time.monotonic()
            with self.assertRaises(UnavailableError):
                client.prepare_training(step=1)
            self.assertLess(time.monotonic() - start, 5.0)
            client.close()

    def test_never_started_address_raises_unavailable(self):
        client = ControllerClient("127.0.0.1:1", timeout=5.0)
        with self.assertRaises(UnavailableError):
            client.list_engines()
        client.close()


class AuthTest(unittest.TestCase):

    def test_mutating_call_needs_the_token(self):
        token_dir = os.environ.get("TEST_TMPDIR", "/tmp")
        token_file = os.path.join(token_dir, "controller.token")
        with open(token_file, "w") as f:
            f.write("s3cret\n")
        with LocalCluster(num_engines=1,
                          controller_flags=[f"--auth_token_file={token_file}"]) as cluster:
            address = cluster.controller.address
            with ControllerClient(address, timeout=10.0) as anonymous:
                anonymous.get_state()  # queries need no token
                with self.assertRaises(UnauthenticatedError):
                    anonymous.finish_weight_sync(step=1)
            with ControllerClient(address, token_file=token_file, timeout=10.0) as client:
                # Past authentication: the phase check answers.
                with self.assertRaises(FailedPreconditionError):
                    client.finish_weight_sync(step=1)


if __name__ == "__main__":
    unittest.main()
