"""Typed views of colo's replies. Each keeps the raw protobuf message in
`.proto` for fields the view does not surface."""

from dataclasses import dataclass, field
from typing import Any, Dict, List

from colo.v1 import controller_pb2


def phase_name(phase: int) -> str:
    """"ROLLOUT", "TRAINING", ... for a colo.v1.Phase value."""
    return controller_pb2.Phase.Name(phase)


@dataclass
class EngineState:
    """One engine as the controller sees it. `health` is "healthy", "stale"
    (no recent answer, not yet lost), "lost" or "unwatched"; `last_ok_us` the
    time of its last answer (microseconds since the epoch, 0: never)."""

    address: str
    healthy: bool
    engine_state: str
    weight_version: str
    released_tags: List[str]
    last_error: str
    proto: Any = field(repr=False, default=None)
    health: str = ""
    last_ok_us: int = 0

    @classmethod
    def from_proto(cls, p: Any) -> "EngineState":
        return cls(address=p.address, healthy=p.healthy, engine_state=p.engine_state,
                   weight_version=p.weight_version, released_tags=list(p.released_tags),
                   last_error=p.last_error, proto=p, health=p.health,
                   last_ok_us=p.last_ok_us)


@dataclass
class NodeState:
    """The node's phase ("ROLLOUT", "TRAINING", ...), the RL step, the reason
    (always set for FAILED) and the engines."""

    phase: str
    step: int
    reason: str
    engines: List[EngineState]
    proto: Any = field(repr=False, default=None)

    @classmethod
    def from_proto(cls, p: Any) -> "NodeState":
        return cls(phase=phase_name(p.phase), step=p.step, reason=p.reason,
                   engines=[EngineState.from_proto(e) for e in p.engines], proto=p)


@dataclass
class Transition:
    """Result of a controller transition. `replayed` is True when the call
    repeated an already completed transition (same step)."""

    state: NodeState
    replayed: bool

    @classmethod
    def from_proto(cls, p: Any) -> "Transition":
        return cls(state=NodeState.from_proto(p.state), replayed=p.replayed)


@dataclass
class WeightSyncGroup:
    """Collective group parameters for a trainer that broadcasts the weights
    itself (the trainer is rank 0; engines are ranks 1..world_size-1)."""

    group_name: str
    backend: str
    master_address: str
    master_port: int
    world_size: int


@dataclass
class EngineEndpoint:
    """An engine to update: `weight_path` "ipc" (update_weights_from_ipc;
    it runs in the trainer's ipc_domain, rank 0) or "broadcast" (rank in the
    group)."""

    address: str
    rank: int
    weight_path: str = "broadcast"
    ipc_domain: str = ""


@dataclass
class WeightSync:
    """Result of begin_weight_sync: the node state, the group parameters and
    the engines (address + rank) to send weights to."""

    state: NodeState
    group: WeightSyncGroup
    engines: List[EngineEndpoint]
    proto: Any = field(repr=False, default=None)

    @classmethod
    def from_proto(cls, p: Any) -> "WeightSync":
        g = p.group
        return cls(
            state=NodeState.from_proto(p.state),
            group=WeightSyncGroup(group_name=g.group_name, backend=g.backend,
                                  master_address=g.master_address, master_port=g.master_port,
                                  world_size=g.world_size),
            engines=[EngineEndpoint(address=e.address, rank=e.rank,
                                    weight_path=e.weight_path or "broadcast",
                                    ipc_domain=e.ipc_domain) for e in p.engines],
            proto=p)

    @property
    def weights_group_params(self) -> Dict[str, Any]:
        """Keyword arguments for torch.distributed.init_process_group on the
        trainer's side of the weight-sync group (rank 0), plus the group name."""
        g = self.group
        return {
            "backend": g.backend,
            "init_method": f"tcp://{g.master_address}:{g.master_port}",
            "world_size": g.world_size,
            "rank": 0,
            "group_name": g.group_name,
        }


@dataclass
class GenerateChunk:
    """One streamed Generate message: new tokens since the previous one; the
    last chunk has finish_reason ("length", "stop", "abort") and totals."""

    rid: str
    output_ids: List[int]
    output_logprobs: List[float]
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    weight_version: str

    @classmethod
    def from_proto(cls, p: Any) -> "GenerateChunk":
        return cls(rid=p.rid, output_ids=list(p.output_ids),
                   output_logprobs=list(p.output_logprobs), finish_reason=p.finish_reason,
                   prompt_tokens=p.prompt_tokens, cached_tokens=p.cached_tokens,
                   completion_tokens=p.completion_tokens, weight_version=p.weight_version)


@dataclass
class GenerateResult:
    """A whole generation (generate_tokens): all tokens and the final fields."""

    rid: str
    output_ids: List[int]
    output_logprobs: List[float]
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    weight_version: str


@dataclass
class UpdateWeightsResult:
    weight_version: str
    num_tensors: int
    bytes: int
    proto: Any = field(repr=False, default=None)

    @classmethod
    def from_proto(cls, p: Any) -> "UpdateWeightsResult":
        return cls(weight_version=p.weight_version, num_tensors=p.num_tensors, bytes=p.bytes,
                   proto=p)


@dataclass
class ServerInfo:
    """GetServerInfo: state ("serving", "paused", "released": memory released
    while not paused, "needs_weights"), weight version, pause mode, released
    tags, device, and the reason when not serving."""

    state: str
    weight_version: str
    paused_mode: str
    released_tags: List[str]
    device: str
    reason: str
    proto: Any = field(repr=False, default=None)

    @classmethod
    def from_proto(cls, p: Any) -> "ServerInfo":
        return cls(state=p.state, weight_version=p.weight_version, paused_mode=p.paused_mode,
                   released_tags=list(p.released_tags), device=p.device, reason=p.reason, proto=p)


def tag_bytes(reply: Any) -> Dict[str, int]:
    """{tag: bytes} of a ReleaseTags/ResumeTags reply."""
    return {t.tag: t.bytes for t in reply.tags}


