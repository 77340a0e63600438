"""colo_client: the trainer's Python client of colo (controller + engines).

    from colo_client import ControllerClient, EngineClient
"""

from colo_client.controller import ControllerClient
from colo_client.engine import EngineClient
from colo_client.ipc import ipc_domain
from colo_client.errors import (AbortedError, CancelledError, ColoError, DeadlineExceededError,
                                FailedPreconditionError, InternalError, InvalidArgumentError,
                                NotFoundError, PermissionDeniedError, ResourceExhaustedError,
                                UnauthenticatedError, UnavailableError, UnimplementedError)
from colo_client.results import (EngineEndpoint, EngineState, GenerateChunk, GenerateResult,
                                 NodeState, ServerInfo, Transition, UpdateWeightsResult,
                                 WeightSync, WeightSyncGroup)

__version__ = "0.1.0"

__all__ = [
    "AbortedError", "CancelledError", "ColoError", "ControllerClient",
    "DeadlineExceededError", "EngineClient", "EngineEndpoint", "EngineState",
    "FailedPreconditionError", "GenerateChunk", "GenerateResult", "InternalError",
    "InvalidArgumentError", "NodeState", "NotFoundError", "PermissionDeniedError",
    "ResourceExhaustedError", "ServerInfo", "Transition", "UnauthenticatedError",
    "UnavailableError", "UnimplementedError", "UpdateWeightsResult", "WeightSync",
    "WeightSyncGroup", "ipc_domain",
]
