"""Exceptions raised by colo_client: one per gRPC status code colo uses.

Every failed RPC raises a ColoError (or a subclass named after the code)
carrying the gRPC status code, the server's message and the method called:

    try:
        controller.finish_weight_sync(step=3)
    except FailedPreconditionError as e:
        print(e.code, e.details)   # StatusCode.FAILED_PRECONDITION, "... needs phase ..."
"""

from typing import Dict, Optional, Type

import grpc


class ColoError(Exception):
    """A colo RPC failed. `code` is a grpc.StatusCode, `details` the server's
    message, `method` the RPC (e.g. "MemoryController/FinishWeightSync")."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, code: grpc.StatusCode, details: str, method: str = ""):
        self.code = code
        self.details = details
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code.name}: {details}")


class InvalidArgumentError(ColoError):
    """A malformed request (INVALID_ARGUMENT)."""


class FailedPreconditionError(ColoError):
    """Wrong lifecycle state, e.g. a call in the wrong phase (FAILED_PRECONDITION)."""


class NotFoundError(ColoError):
    """Unknown session, request or tensor name (NOT_FOUND)."""


class ResourceExhaustedError(ColoError):
    """KV cache or memory full (RESOURCE_EXHAUSTED)."""


class UnavailableError(ColoError):
    """Peer not reachable or not ready; retryable (UNAVAILABLE)."""


class AbortedError(ColoError):
    """Weight-version race or interrupted update (ABORTED)."""


class DeadlineExceededError(ColoError):
    """The call's deadline passed (DEADLINE_EXCEEDED)."""


class UnauthenticatedError(ColoError):
    """Missing or wrong bearer token (UNAUTHENTICATED)."""


class PermissionDeniedError(ColoError):
    """PERMISSION_DENIED."""


class UnimplementedError(ColoError):
    """The server does not implement this RPC yet (UNIMPLEMENTED)."""


class InternalError(ColoError):
    """INTERNAL."""


class CancelledError(ColoError):
    """The call was cancelled (CANCELLED)."""


_BY_CODE: Dict[grpc.StatusCode, Type[ColoError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.CANCELLED: CancelledError,
}


def error_for(code: grpc.StatusCode, details: str, method: str = "") -> ColoError:
    """The ColoError subclass for `code` (ColoError itself for other codes)."""
    cls = _BY_CODE.get(code, ColoError)
    return cls(code, details, method)


def from_rpc_error(error: grpc.RpcError, method: str = "") -> ColoError:
    """Converts a grpc.RpcError (a failed call) into a ColoError."""
    code: Optional[grpc.StatusCode] = None
    details = ""
    if isinstance(error, grpc.Call):
        code = error.code()
        details = error.details() or ""
    if code is None:
        code = grpc.StatusCode.UNKNOWN
        details = details or str(error)
    return error_for(code, details, method)
