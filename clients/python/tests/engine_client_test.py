"""EngineClient against a real colo-engine (CPU, generated tiny model):
request validation, generation, sessions, pause/release and weight updates."""

import system_python  # noqa: F401  (first: re-exec under /usr/bin/python3)

import unittest

import torch

from colo_client import (EngineClient, FailedPreconditionError, InvalidArgumentError,
                         NotFoundError)
from colo_client import safetensors
from colo_client.results import tag_bytes
from local_cluster import LocalCluster

PROMPT = [1, 2, 3, 4, 5]


def perturbed(weights, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: (t.float() + 0.05 * torch.randn(t.shape, generator=g)).to(t.dtype)
            for n, t in weights.items()}


class EngineClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster(num_engines=1, controller=False).__enter__()
        cls.engine = EngineClient(cls.cluster.engine_addresses[0], timeout=30.0)
        cls.checkpoint = safetensors.load_model_dir(cls.cluster.model_dir)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()
        cls.cluster.__exit__(None, None, None)

    def greedy(self, n=8):
        return self.engine.generate_tokens(PROMPT, max_new_tokens=n, ignore_eos=True,
                                           timeout=60.0)

    # --- validation (no runtime needed) -----------------------------------------

    def test_health_is_serving(self):
        self.assertEqual(self.engine.health(""), "SERVING")

    def test_empty_prompt_is_invalid_argument(self):
        with self.assertRaises(InvalidArgumentError):
            list(self.engine.generate([], max_new_tokens=4, timeout=10.0))

    def test_token_beyond_vocab_is_invalid_argument(self):
        with self.assertRaises(InvalidArgumentError):
            list(self.engine.generate([1, 100000], max_new_tokens=4, timeout=10.0))

    def test_unknown_tag_is_invalid_argument(self):
        with self.assertRaises(InvalidArgumentError) as ctx:
            self.engine.release_tags(["not_a_tag"])
        self.assertIn("not_a_tag", str(ctx.exception))

    def test_unknown_pause_mode_is_invalid_argument(self):
        with self.assertRaises(InvalidArgumentError):
            self.engine.pause("sideways")

    # --- runtime ----------------------------------------------------------------

    def test_server_info_and_memory_info(self):
        info = self.engine.get_server_info()
        self.assertEqual(info.device, "cpu")
        self.assertEqual(info.proto.model.vocab_size, 256)
        memory = self.engine.get_memory_info()
        tags = {t.tag for t in memory.tags}
        self.assertTrue({"weights", "kv_cache"} <= tags, tags)

    def test_generate_streams_then_finishes_with_length(self):
        chunks = list(self.engine.generate(PROMPT, max_new_tokens=6, ignore_eos=True,
                                           timeout=60.0))
        self.assertGreaterEqual(len(chunks), 1)
        self.assertEqual(chunks[-1].finish_reason, "length")
        self.assertTrue(all(c.finish_reason == "" for c in chunks[:-1]))
        self.assertEqual(sum(len(c.output_ids) for c in chunks), 6)
        self.assertEqual(chunks[-1].prompt_tokens, len(PROMPT))

    def test_greedy_is_deterministic(self):
        a, b = self.greedy(), self.greedy()
        self.assertEqual(len(a.output_ids), 8)
        self.assertEqual(a.output_ids, b.output_ids)

    def test_session_turns_and_close(self):
        sid = self.engine.open_session(capacity_tokens=128)
        self.assertTrue(sid)
        first = self.engine.generate_tokens(PROMPT, max_new_tokens=4, ignore_eos=True,
                                            session_id=sid, timeout=60.0)
        self.assertEqual(len(first.output_ids), 4)
        second = self.engine.generate_tokens([7, 8], max_new_tokens=4, ignore_eos=True,
                                             session_id=sid, timeout=60.0)
        self.assertEqual(len(second.output_ids), 4)
        self.assertGreater(self.engine.close_session(sid), 0)
        with self.assertRaises(NotFoundError):
            self.engine.close_session(sid)

    def test_pause_release_resume_continue(self):
        self.engine.pause("retract")
        try:
            released = tag_bytes(self.engine.release_tags(["kv_cache"]))
            self.assertGreater(released["kv_cache"], 0)
            self.assertIn("kv_cache", self.engine.get_server_info().released_tags)
            with self.assertRaises(FailedPreconditionError):
                self.engine.continue_generation()  # the forward pass needs kv_cache
            resumed = tag_bytes(self.engine.resume_tags(["kv_cache"]))
            self.assertEqual(resumed["kv_cache"], released["kv_cache"])
        finally:
            self.engine.resume_tags([])
            self.engine.continue_generation(torch_empty_cache=True)
        self.assertEqual(len(self.greedy().output_ids), 8)

    def test_update_weights_from_tensors_changes_and_restores_outputs(self):
        before = self.greedy().output_ids
        new = perturbed(self.checkpoint, seed=11)
        result = self.engine.update_weights_from_tensors(new, weight_version="perturbed-11",
                                                         flush_cache=True, chunk_bytes=4096)
        self.assertEqual(result.weight_version, "perturbed-11")
        self.assertEqual(result.num_tensors, len(new))
        self.assertEqual(self.engine.get_server_info().weight_version, "perturbed-11")
        out = self.greedy()
        self.assertEqual(out.weight_version, "perturbed-11")
        self.assertNotEqual(out.output_ids, before, "perturbed weights, same tokens")
        self.engine.update_weights_from_tensors(self.checkpoint, weight_version="original",
                                                flush_cache=True)
        self.assertEqual(self.greedy().output_ids, before)

    def test_failed_update_keeps_previous_weights(self):
        version = self.engine.get_server_info().weight_version
        # Unknown names are INVALID_ARGUMENT (validated before a byte moves).
        with self.assertRaises(InvalidArgumentError):
            self.engine.update_weights_from_tensors({"no.such.tensor": torch.zeros(3)}, "bad")
        name, t = next(iter(self.checkpoint.items()))
        with self.assertRaises(InvalidArgumentError):
            self.engine.update_weights_from_tensors({name: torch.zeros(t.numel() + 1)}, "bad")
        self.assertEqual(self.engine.get_server_info().weight_version, version)

    def test_update_weights_from_disk(self):
        result = self.engine.update_weights_from_disk(self.cluster.model_dir, "disk-1")
        self.assertEqual(result.weight_version, "disk-1")
        self.assertEqual(self.engine.get_server_info().weight_version, "disk-1")

    def test_flush_cache(self):
        self.greedy()
        self.assertGreaterEqual(self.engine.flush_cache(), 0)


if __name__ == "__main__":
    unittest.main()
