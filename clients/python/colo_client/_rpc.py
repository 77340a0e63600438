"""Channel creation, bearer-token metadata, deadlines and error mapping
shared by ControllerClient and EngineClient (internal)."""

import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

import grpc

from colo_client.errors import ColoError, error_for, from_rpc_error

# Large enough for weight chunks and full memory pictures.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES


def make_channel(address: str, root_certificates: Optional[bytes] = None) -> grpc.Channel:
    """An insecure channel, or TLS when `root_certificates` (PEM) is given."""
    options = [
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ]
    if root_certificates is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return grpc.secure_channel(address, creds, options=options)
    return grpc.insecure_channel(address, options=options)


def read_token(token: Optional[str] = None, token_file: Optional[str] = None) -> Optional[str]:
    """The bearer token: `token`, else the trimmed content of `token_file`."""
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token_file is not None:
        with open(token_file, "r", encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ValueError(f"token file {token_file} is empty")
    return token or None


class RpcHelper:
    """Calls one service's methods with metadata, a deadline and ColoError
    mapping. Thread-safe (gRPC channels and stubs are)."""

    def __init__(self, service: str, stub: Any, token: Optional[str], timeout: float):
        if timeout is None or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self._service = service
        self._stub = stub
        self._metadata: List[Tuple[str, str]] = []
        if token:
            self._metadata.append(("authorization", f"Bearer {token}"))
        self.timeout = timeout

    @property
    def metadata(self) -> List[Tuple[str, str]]:
        return self._metadata

    def stub_method(self, method: str) -> Callable[..., Any]:
        """The raw stub method (for bidirectional streams)."""
        return getattr(self._stub, method)

    def unary(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        """Calls a unary method; raises ColoError on failure."""
        fn: Callable[..., Any] = getattr(self._stub, method)
        try:
            return fn(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, f"{self._service}/{method}") from None

    def stream_out(self, method: str, request: Any, timeout: Optional[float]) -> Iterator[Any]:
        """Calls a server-streaming method; yields responses, raises ColoError.
        Closing the generator cancels the call."""
        fn: Callable[..., Any] = getattr(self._stub, method)
        call = fn(request, timeout=timeout, metadata=self._metadata)
        try:
            for response in call:
                yield response
        except grpc.RpcError as e:
            raise from_rpc_error(e, f"{self._service}/{method}") from None
        finally:
            call.cancel()

    def stream_in(self, method: str, requests: Iterator[Any], timeout: Optional[float] = None) -> Any:
        """Calls a client-streaming method; raises ColoError."""
        fn: Callable[..., Any] = getattr(self._stub, method)
        try:
            return fn(requests, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, f"{self._service}/{method}") from None


# grpc.health.v1 without the grpcio-health-checking package: the request is
# `message HealthCheckRequest { string service = 1; }` and the response
# `message HealthCheckResponse { ServingStatus status = 1; }`.
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _encode_health_request(service: str) -> bytes:
    data = service.encode("utf-8")
    out = bytearray()
    if data:
        out.append(0x0A)  # field 1, length-delimited
        n = len(data)
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                break
        out += data
    return bytes(out)


def _decode_health_response(data: bytes) -> str:
    status = 0
    i = 0
    while i < len(data):
        key = data[i]
        i += 1
        if key == 0x08:  # field 1, varint
            value, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            status = value
        else:
            break  # no other fields in this message
    return _HEALTH_STATUS.get(status, f"STATUS_{status}")


def health_check(channel: grpc.Channel, service: str, timeout: float) -> str:
    """grpc.health.v1.Health/Check: "SERVING", "NOT_SERVING", ... Raises
    ColoError (NOT_FOUND for a service name the server does not know)."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda s: _encode_health_request(s),
        response_deserializer=_decode_health_response,
    )
    try:
        return check(service, timeout=timeout)
    except grpc.RpcError as e:
        raise from_rpc_error(e, "grpc.health.v1.Health/Check") from None


def wait_until_serving(channel: grpc.Channel, service: str, timeout: float) -> None:
    """Blocks until the health service reports SERVING (bounded by `timeout`
    seconds); raises ColoError (the last error, or DEADLINE_EXCEEDED)."""
    deadline = time.monotonic() + timeout
    last: Optional[ColoError] = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise last or error_for(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"health service '{service}' not SERVING within {timeout:.1f}s",
                "grpc.health.v1.Health/Check")
        try:
            # Waits for the connection itself (no busy loop while connecting).
            grpc.channel_ready_future(channel).result(timeout=remaining)
            if health_check(channel, service, min(remaining, 5.0)) == "SERVING":
                return
        except grpc.FutureTimeoutError:
            continue
        except ColoError as e:
            last = e
        # The server answered but is not serving yet: a short pause, bounded
        # by the deadline above.
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
