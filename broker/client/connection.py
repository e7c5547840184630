"""One blocking TCP connection to one Kafka broker, speaking through ``protocol.codec``.

The CLI is a short-lived, sequential program, so the client is synchronous: a request
is encoded, written, and its response read back before the next one (no pipelining).
On connect the connection negotiates API versions (ApiVersions): each later request
uses the highest version both this client's codec and the broker support. With a
:class:`~broker.client.auth.Security` the socket is wrapped in TLS first and, after
ApiVersions, the connection authenticates with SASL (see :mod:`broker.client.auth`).
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from types import TracebackType
from typing import Final, TypeVar

from broker.client.auth import Security, authenticate, ssl_context
from broker.client.errors import (
    BadResponse,
    BrokerUnreachable,
    ClientTimeout,
    KafkaError,
    UnsupportedApi,
)
from protocol.codec import (
    decode_response,
    encode_request,
    request_class,
    supported_versions,
)
from protocol.errors import ProtocolError
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.schema import message_spec

R = TypeVar("R")

_SIZE: Final = struct.Struct(">i")
_MAX_FRAME: Final = 256 * 1024 * 1024
_API_VERSIONS_KEY: Final = 18
_UNSUPPORTED_VERSION: Final = 35

UNREACHABLE_HINT: Final = (
    "is a broker running there? set --brokers or AILURUS_BROKERS to host:port"
)


def parse_address(address: str, default_port: int = 9092) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:9092``); a missing port means 9092."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port else default_port
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    if not port.isdigit():
        raise ValueError(f"bad broker address {address!r}: port must be a number")
    return host or "127.0.0.1", int(port)


def api_name(api_key: int) -> str:
    """A readable name for an API key (the request class name without ``Request``)."""
    try:
        return request_class(api_key).__name__.removesuffix("Request")
    except (KeyError, ValueError, ProtocolError):
        return f"api {api_key}"


class Connection:
    """A blocking request/response connection with negotiated API versions."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "ailurus-cli",
        timeout: float = 10.0,
        security: Security | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.client_id = client_id
        self.timeout = timeout
        self._correlation_id = 0
        self.closed = False
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise BrokerUnreachable(
                self.address, UNREACHABLE_HINT, _reason(exc)
            ) from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.broker_versions: dict[int, tuple[int, int]] = {}
        self.versions: dict[int, int] = {}
        self.security = security or Security()
        try:
            if self.security.uses_tls:
                self._start_tls(ssl_context(self.security))
            self._negotiate()
            if self.security.sasl:
                authenticate(self, self.security)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.closed = True
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------

    def version_for(self, api_key: int) -> int:
        """The highest version of ``api_key`` both sides support."""
        try:
            return self.versions[api_key]
        except KeyError:
            raise UnsupportedApi(api_name(api_key), self.address) from None

    def supports(self, api_key: int) -> bool:
        """Whether both sides speak some version of ``api_key``."""
        return api_key in self.versions

    def request(
        self, request: object, response_type: type[R], *, version: int | None = None
    ) -> R:
        """Send ``request`` and return its decoded response (of ``response_type``)."""
        api_key = message_spec(type(request)).api_key
        if version is None:
            version = self.version_for(api_key)
        try:
            correlation_id = self._send(api_key, version, request)
            frame = self._receive()
        except BaseException:
            # Interrupted or failed mid-exchange (Ctrl-C, a timeout): a response may
            # still arrive, so this connection is out of step; the client reconnects.
            self.close()
            raise
        try:
            header, response = decode_response(api_key, version, frame)
        except ProtocolError as exc:
            raise BadResponse(
                self.address, f"cannot decode {api_name(api_key)} v{version}: {exc}"
            ) from exc
        if header.correlation_id != correlation_id:
            raise BadResponse(
                self.address,
                f"correlation id {header.correlation_id}, expected {correlation_id}",
            )
        if not isinstance(response, response_type):
            raise TypeError(
                f"expected {response_type.__name__}, got {type(response).__name__}"
            )
        return response

    def send_only(self, request: object, *, version: int | None = None) -> None:
        """Send a request that gets no response (Produce with acks=0)."""
        api_key = message_spec(type(request)).api_key
        self._send(
            api_key, self.version_for(api_key) if version is None else version, request
        )

    # -- internals -------------------------------------------------------------

    def _start_tls(self, context: ssl.SSLContext) -> None:
        try:
            self._sock = context.wrap_socket(self._sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raise BrokerUnreachable(
                self.address,
                "the broker's certificate is not trusted; "
                "give its CA with -X tls.ca=FILE",
                exc.verify_message or "certificate verify failed",
            ) from exc
        except ssl.SSLError as exc:
            raise BrokerUnreachable(
                self.address,
                "TLS handshake failed (is this a TLS listener? does it need a client "
                "certificate: -X tls.cert= -X tls.key=?)",
                str(exc.reason or exc),
            ) from exc
        except TimeoutError as exc:
            raise ClientTimeout(
                f"broker {self.address}: TLS handshake timed out"
            ) from exc
        except OSError as exc:
            raise BrokerUnreachable(
                self.address,
                "the connection broke during the TLS handshake",
                _reason(exc),
            ) from exc

    def _send(self, api_key: int, version: int, request: object) -> int:
        self._correlation_id += 1
        header = RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=self._correlation_id,
            client_id=self.client_id,
        )
        data = encode_request(header, request)
        try:
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise ClientTimeout(
                f"broker {self.address}: timed out sending a request"
            ) from exc
        except OSError as exc:
            raise BrokerUnreachable(
                self.address, "the connection broke while sending", _reason(exc)
            ) from exc
        return self._correlation_id

    def _receive(self) -> bytes:
        (size,) = _SIZE.unpack(self._read_exactly(4))
        if size < 0 or size > _MAX_FRAME:
            raise BrokerUnreachable(
                self.address, "the broker sent a bad frame", f"size {size}"
            )
        return self._read_exactly(size)

    def _read_exactly(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        deadline = time.monotonic() + self.timeout
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientTimeout(
                    f"broker {self.address}: no response within {self.timeout:g}s"
                )
            self._sock.settimeout(remaining)
            try:
                k = self._sock.recv_into(view[got:], n - got)
            except TimeoutError as exc:
                raise ClientTimeout(
                    f"broker {self.address}: no response within {self.timeout:g}s"
                ) from exc
            except OSError as exc:
                raise BrokerUnreachable(
                    self.address, "the connection broke while reading", _reason(exc)
                ) from exc
            if k == 0:
                raise BrokerUnreachable(
                    self.address,
                    "the broker closed the connection (is this a Kafka port? "
                    "does the listener need TLS (-X tls.enabled=true) or "
                    "SASL (-X user= -X pass=)?)",
                )
            got += k
        return bytes(buf)

    def _negotiate(self) -> None:
        ours = supported_versions()
        low, high = ours[_API_VERSIONS_KEY]
        version = min(high, 3)
        response = self.request(
            ApiVersionsRequest(
                client_software_name="ailurus-cli", client_software_version="0.1.0"
            ),
            ApiVersionsResponse,
            version=version,
        )
        if response.error_code == _UNSUPPORTED_VERSION and version > low:
            # KIP-511: a broker answers an unknown ApiVersions version in v0's format.
            response = self.request(
                ApiVersionsRequest(), ApiVersionsResponse, version=0
            )
        if response.error_code:
            raise KafkaError(response.error_code, f"ApiVersions from {self.address}")
        for entry in response.api_keys:
            self.broker_versions[entry.api_key] = (entry.min_version, entry.max_version)
            if entry.api_key in ours:
                our_low, our_high = ours[entry.api_key]
                best = min(our_high, entry.max_version)
                if best >= max(our_low, entry.min_version):
                    self.versions[entry.api_key] = best


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
