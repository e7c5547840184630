"""The codec entry points the broker and the client call.

``decode_request`` / ``encode_response`` are the broker's hot path; ``encode_request``
/ ``decode_response`` are the client's. A message module of :mod:`protocol.messages`
is imported on the first use of its API key (:func:`protocol.messages.load`, ~5 ms
each instead of ~150 ms for all at start-up), filling :data:`protocol.schema.REGISTRY`;
:mod:`protocol.compiler` turns each (message, version) into specialised functions on
first use. :func:`supported_versions` answers from the static table
:data:`protocol.messages.SUPPORTED` without loading anything.

Trailing bytes after a request body are ignored, as Kafka's own request parsing
(``AbstractRequest.parseRequest`` over the frame's buffer) ignores them. Decoding
raises only :class:`DecodeError` / :class:`UnsupportedVersion`; encoding a value its
version cannot carry raises :class:`EncodeError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, cast

from protocol import primitives
from protocol.compiler import (
    DECODE_FAILURES,
    ENCODE_FAILURES,
    Decoder,
    Encoder,
    check_version,
    decoder_for,
    encoder_for,
)
from protocol.errors import DecodeError, EncodeError, UnsupportedVersion
from protocol.headers import (
    RequestHeader,
    ResponseHeader,
    request_header_version,
    response_header_version,
)
from protocol.messages import SUPPORTED, load
from protocol.schema import REGISTRY, Buffer, Kind, message_spec

__all__ = [
    "Decoder",
    "Encoder",
    "decode",
    "decode_request",
    "decode_response",
    "decoder_for",
    "encode",
    "encode_request",
    "encode_response",
    "encoder_for",
    "request_class",
    "response_class",
    "supported_versions",
]


_HEADER_START: Final = struct.Struct(">hhi")
_SIZE: Final = struct.Struct(">i")
_SIZE_AND_CORRELATION: Final = struct.Struct(">ii")


def _lookup(api_key: int, kind: Kind) -> type | None:
    """The registered class, importing its message module on first use."""
    cls = REGISTRY.get((api_key, kind))
    if cls is None and load(api_key):
        cls = REGISTRY.get((api_key, kind))
    return cls


def request_class(api_key: int) -> type:
    """The request class of ``api_key`` (KeyError if we have none)."""
    cls = _lookup(api_key, "request")
    if cls is None:
        raise KeyError((api_key, "request"))
    return cls


def response_class(api_key: int) -> type:
    """The response class of ``api_key`` (KeyError if we have none)."""
    cls = _lookup(api_key, "response")
    if cls is None:
        raise KeyError((api_key, "response"))
    return cls


def supported_versions() -> dict[int, tuple[int, int]]:
    """api_key -> (min, max) version for every API with a request and a response.

    From the static table (nothing imported); a test checks it against the schemas.
    """
    return dict(SUPPORTED)


def decode(cls: type, version: int, data: Buffer) -> object:
    """Decode one whole message body of ``cls`` in ``version`` (trailing bytes ignored)."""
    fn = decoder_for(cls, version)
    buf = data if isinstance(data, memoryview) else memoryview(data)
    try:
        obj, _pos = fn(buf, 0)
    except DECODE_FAILURES as exc:
        raise DecodeError(f"malformed {cls.__name__} v{version}: {exc}") from exc
    return obj


def encode(obj: object, version: int) -> bytes:
    """Encode a message (or header) body in ``version``, without a size prefix."""
    fn = encoder_for(type(obj), version)
    parts: list[Buffer] = []
    try:
        out = fn(obj, bytearray(), parts)
    except ENCODE_FAILURES as exc:
        raise EncodeError(
            f"cannot encode {type(obj).__name__} v{version}: {exc}"
        ) from exc
    return primitives.join_parts(out, parts)


_RequestEntry = tuple[Decoder, Decoder]
_REQUESTS: Final[dict[tuple[int, int], _RequestEntry]] = {}


def _request_entry(api_key: int, version: int) -> _RequestEntry | None:
    cls = _lookup(api_key, "request")
    if cls is None or version not in message_spec(cls).valid:
        return None
    header_version = request_header_version(version in message_spec(cls).flexible)
    entry = (decoder_for(RequestHeader, header_version), decoder_for(cls, version))
    _REQUESTS[(api_key, version)] = entry
    return entry


def _unsupported(
    buf: memoryview, api_key: int, version: int, correlation_id: int
) -> UnsupportedVersion:
    client_id = None
    try:
        header, _pos = decoder_for(RequestHeader, 1)(buf, 0)
        client_id = cast("RequestHeader", header).client_id
    except (*DECODE_FAILURES, DecodeError):
        pass
    return UnsupportedVersion(
        api_key=api_key,
        api_version=version,
        correlation_id=correlation_id,
        client_id=client_id,
    )


def decode_request(frame: Buffer) -> tuple[RequestHeader, object]:
    """Decode a request frame (without its size prefix) into its header and body.

    Raises:
        UnsupportedVersion: the API key or version is not one we implement.
        DecodeError: anything malformed.
    """
    buf = frame if isinstance(frame, memoryview) else memoryview(frame)
    try:
        api_key, version, correlation_id = _HEADER_START.unpack_from(buf, 0)
    except struct.error as exc:
        raise DecodeError("request shorter than its header") from exc
    entry = _REQUESTS.get((api_key, version)) or _request_entry(api_key, version)
    if entry is None:
        raise _unsupported(buf, api_key, version, correlation_id)
    try:
        header, pos = entry[0](buf, 0)
        body, _pos = entry[1](buf, pos)
    except DECODE_FAILURES as exc:
        raise DecodeError(
            f"malformed request api_key={api_key} v{version}: {exc}"
        ) from exc
    return cast("RequestHeader", header), body


_ResponseEntry = tuple[type, bool, Encoder]
_RESPONSES: Final[dict[tuple[int, int], _ResponseEntry]] = {}


def _response_entry(api_key: int, version: int) -> _ResponseEntry:
    cls = _lookup(api_key, "response")
    if cls is None or version not in message_spec(cls).valid:
        raise EncodeError(f"no response for api_key={api_key} v{version}")
    flexible_header = (
        response_header_version(api_key, version in message_spec(cls).flexible) == 1
    )
    entry = (cls, flexible_header, encoder_for(cls, version))
    _RESPONSES[(api_key, version)] = entry
    return entry


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """A response body encoded once, to be sent for many requests (a handler that
    answers the same bytes again, such as a Metadata of an unchanged cluster, caches
    it; :func:`encode_response` adds the header of each request)."""

    api_key: int
    api_version: int
    body: bytes


def encode_response_body(
    api_key: int, api_version: int, response: object
) -> EncodedResponse:
    """Encode a response's body (no header, no size prefix) for reuse."""
    cls, _flexible_header, fn = _RESPONSES.get((api_key, api_version)) or (
        _response_entry(api_key, api_version)
    )
    if type(response) is not cls:
        raise EncodeError(f"expected {cls.__name__}, got {type(response).__name__}")
    parts: list[Buffer] = []
    try:
        out = fn(response, bytearray(), parts)
    except ENCODE_FAILURES as exc:
        raise EncodeError(
            f"cannot encode {cls.__name__} v{api_version}: {exc}"
        ) from exc
    return EncodedResponse(api_key, api_version, primitives.join_parts(out, parts))


def encode_response(header: RequestHeader, response: object) -> list[Buffer]:
    """Encode a response to the request with ``header`` as buffers for ``writelines``.

    The first buffer starts with the 4-byte size prefix; large record buffers are
    passed through uncopied. ``response`` may be an :class:`EncodedResponse` of the
    request's API and version.
    """
    key = (header.request_api_key, header.request_api_version)
    cls, flexible_header, fn = _RESPONSES.get(key) or _response_entry(*key)
    if type(response) is EncodedResponse:
        if (response.api_key, response.api_version) != key:
            raise EncodeError(
                f"an encoded response of {response.api_key} v{response.api_version} "
                f"answers {key[0]} v{key[1]}"
            )
        prefix = bytearray(_SIZE_AND_CORRELATION.pack(0, header.correlation_id))
        if flexible_header:
            prefix.append(0)
        _SIZE.pack_into(prefix, 0, len(prefix) + len(response.body) - 4)
        return [prefix, response.body]
    if type(response) is not cls:
        raise EncodeError(f"expected {cls.__name__}, got {type(response).__name__}")
    first = bytearray(_SIZE_AND_CORRELATION.pack(0, header.correlation_id))
    if flexible_header:
        first.append(0)
    parts: list[Buffer] = []
    try:
        out = fn(response, first, parts)
    except ENCODE_FAILURES as exc:
        raise EncodeError(f"cannot encode {cls.__name__} v{key[1]}: {exc}") from exc
    parts.append(out)
    head = parts[0]
    assert isinstance(head, bytearray)
    _SIZE.pack_into(head, 0, sum(map(len, parts)) - 4)
    return parts


def encode_request(header: RequestHeader, request: object) -> bytes:
    """Encode a request with its header, size prefix included (the client side)."""
    version = header.request_api_version
    cls = _lookup(header.request_api_key, "request")
    if cls is None or type(request) is not cls:
        raise EncodeError(
            f"no request class {type(request).__name__} for {header.request_api_key}"
        )
    flexible = check_version(cls, version)
    out = bytearray(4)
    parts: list[Buffer] = []
    try:
        out = encoder_for(RequestHeader, request_header_version(flexible))(
            header, out, parts
        )
        out = encoder_for(cls, version)(request, out, parts)
    except ENCODE_FAILURES as exc:
        raise EncodeError(f"cannot encode {cls.__name__} v{version}: {exc}") from exc
    data = bytearray(primitives.join_parts(out, parts))
    _SIZE.pack_into(data, 0, len(data) - 4)
    return bytes(data)


def decode_response(
    api_key: int, api_version: int, frame: Buffer
) -> tuple[ResponseHeader, object]:
    """Decode a response frame (without its size prefix) to a request we sent."""
    cls = _lookup(api_key, "response")
    if cls is None or api_version not in message_spec(cls).valid:
        raise UnsupportedVersion(
            api_key=api_key, api_version=api_version, correlation_id=-1, client_id=None
        )
    flexible = api_version in message_spec(cls).flexible
    header_fn = decoder_for(ResponseHeader, response_header_version(api_key, flexible))
    buf = frame if isinstance(frame, memoryview) else memoryview(frame)
    try:
        header, pos = header_fn(buf, 0)
        body, _pos = decoder_for(cls, api_version)(buf, pos)
    except DECODE_FAILURES as exc:
        raise DecodeError(f"malformed {cls.__name__} v{api_version}: {exc}") from exc
    return cast("ResponseHeader", header), body
