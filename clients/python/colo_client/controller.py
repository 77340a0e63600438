"""ControllerClient: the trainer's side of the colocated cycle.

    ctl = ControllerClient("127.0.0.1:50051", token_file="/etc/colo/token")
    ctl.prepare_training(step)                 # engines paused + memory released
    sync = ctl.begin_weight_sync(step)         # engine weights resumed
    ...send weights to sync.engines...
    ctl.finish_weight_sync(step)               # KV cache resumed, generation continues

Every call raises a ColoError subclass on failure (a call in the wrong phase
is FailedPreconditionError naming both phases; an unreachable controller is
UnavailableError). Thread-safe.
"""

from typing import Iterator, List, Optional

from colo.v1 import controller_pb2, controller_pb2_grpc

from colo_client import _rpc
from colo_client.results import EngineState, NodeState, Transition, WeightSync

# Transitions pause, release and resume every engine of the node: allow more
# than a plain query.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_TRANSITION_TIMEOUT_S = 600.0

PAUSE_MODES = ("abort", "retract", "in_place")


def _check_mode(mode: str) -> str:
    if mode and mode not in PAUSE_MODES:
        raise ValueError(f"pause mode '{mode}' is not one of {', '.join(PAUSE_MODES)}")
    return mode


class ControllerClient:
    """Client of colo.v1.MemoryController (one per node)."""

    def __init__(self, address: str, token: Optional[str] = None,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 transition_timeout: float = DEFAULT_TRANSITION_TIMEOUT_S,
                 token_file: Optional[str] = None,
                 root_certificates: Optional[bytes] = None):
        """`address` is host:port; `token` (or `token_file`) the bearer token
        the controller's --auth_token_file holds; `timeout` the deadline in
        seconds of queries, `transition_timeout` that of cycle transitions;
        `root_certificates` (PEM bytes) switches to TLS."""
        self.address = address
        self._channel = _rpc.make_channel(address, root_certificates)
        self._rpc = _rpc.RpcHelper("MemoryController",
                                   controller_pb2_grpc.MemoryControllerStub(self._channel),
                                   _rpc.read_token(token, token_file), timeout)
        if transition_timeout <= 0:
            raise ValueError(f"transition_timeout must be > 0, got {transition_timeout}")
        self._transition_timeout = transition_timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ControllerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Blocks until the controller's health service is SERVING."""
        _rpc.wait_until_serving(self._channel, "", timeout)

    # --- the colocated cycle -------------------------------------------------

    def prepare_training(self, step: int, pause_mode: str = "retract",
                         timeout: Optional[float] = None) -> Transition:
        """ROLLOUT -> TRAINING: pause every engine (`pause_mode`: abort,
        retract or in_place), release weights, kv_cache and cuda_graph and
        verify the memory was freed. Idempotent per `step`."""
        request = controller_pb2.PrepareTrainingRequest(step=step, pause_mode=_check_mode(pause_mode))
        return Transition.from_proto(
            self._rpc.unary("PrepareTraining", request, timeout or self._transition_timeout))

    def begin_weight_sync(self, step: int, timeout: Optional[float] = None,
                          trainer_ipc_domain: Optional[str] = None) -> WeightSync:
        """TRAINING -> WEIGHT_SYNC: resume the engines' `weights` only. The
        result names the engines and the group parameters
        (`.weights_group_params`) for a trainer that broadcasts itself.
        With `trainer_ipc_domain` (colo_client.ipc_domain() of the trainer
        process), engines in that domain get weight_path "ipc" (use
        update_weights_from_ipc) and the group holds only the others."""
        request = controller_pb2.BeginWeightSyncRequest(
            step=step, trainer_ipc_domain=trainer_ipc_domain or "")
        return WeightSync.from_proto(
            self._rpc.unary("BeginWeightSync", request, timeout or self._transition_timeout))

    def finish_weight_sync(self, step: int, trainer_weights_freed: bool = True,
                           timeout: Optional[float] = None) -> Transition:
        """WEIGHT_SYNC -> ROLLOUT: once the trainer freed its weight copy,
        resume kv_cache and cuda_graph and continue generation."""
        request = controller_pb2.FinishWeightSyncRequest(
            step=step, trainer_weights_freed=trainer_weights_freed)
        return Transition.from_proto(
            self._rpc.unary("FinishWeightSync", request, timeout or self._transition_timeout))

    def pause_for_update(self, step: int, mode: str = "in_place",
                         timeout: Optional[float] = None) -> Transition:
        """ROLLOUT -> PAUSED_FOR_UPDATE (async RL: update without release)."""
        request = controller_pb2.PauseForUpdateRequest(step=step, mode=_check_mode(mode))
        return Transition.from_proto(
            self._rpc.unary("PauseForUpdate", request, timeout or self._transition_timeout))

    def resume_after_update(self, step: int, timeout: Optional[float] = None) -> Transition:
        """PAUSED_FOR_UPDATE -> ROLLOUT."""
        request = controller_pb2.ResumeAfterUpdateRequest(step=step)
        return Transition.from_proto(
            self._rpc.unary("ResumeAfterUpdate", request, timeout or self._transition_timeout))

    def recover(self, timeout: Optional[float] = None) -> Transition:
        """FAILED (or an abandoned cycle) -> ROLLOUT once every engine answers."""
        return Transition.from_proto(self._rpc.unary(
            "Recover", controller_pb2.RecoverRequest(), timeout or self._transition_timeout))

    # --- queries ---------------------------------------------------------------

    def get_state(self, include_memory: bool = False,
                  timeout: Optional[float] = None) -> NodeState:
        """Phase, step, reason and per-engine state (and memory when asked)."""
        request = controller_pb2.GetStateRequest(include_memory=include_memory)
        return NodeState.from_proto(self._rpc.unary("GetState", request, timeout))

    def list_engines(self, timeout: Optional[float] = None) -> List[EngineState]:
        reply = self._rpc.unary("ListEngines", controller_pb2.ListEnginesRequest(), timeout)
        return [EngineState.from_proto(e) for e in reply.engines]

    def watch(self, timeout: Optional[float] = None) -> Iterator[NodeState]:
        """The current state, then every phase change. `timeout` bounds the
        whole stream (None: until the caller stops iterating, which cancels
        the call)."""
        for state in self._rpc.stream_out("Watch", controller_pb2.WatchRequest(), timeout):
            yield NodeState.from_proto(state)
