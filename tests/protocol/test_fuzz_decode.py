"""Random and mutated frames never make decode_request raise anything but ProtocolError."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import ProtocolError
from protocol.headers import RequestHeader
from protocol.messages import MODULES, load_all
from protocol.schema import REGISTRY, message_spec
from tests.strategies import messages

# Messages load lazily per API key; these tests cover every schema.
load_all()
assert len(REGISTRY) == 2 * len(MODULES)

REQUESTS = sorted(
    (cls for (_key, kind), cls in REGISTRY.items() if kind == "request"),
    key=lambda cls: message_spec(cls).api_key,
)


def _decode_tolerantly(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        codec.decode_request(frame)


@st.composite
def valid_frames(draw: st.DrawFn) -> bytes:
    cls = draw(st.sampled_from(REQUESTS))
    spec = message_spec(cls)
    version = draw(st.integers(spec.valid.low, spec.valid.high))
    obj = draw(messages(cls, version))
    header = RequestHeader(
        request_api_key=spec.api_key,
        request_api_version=version,
        correlation_id=draw(st.integers(0, 2**31 - 1)),
        client_id=draw(st.none() | st.text(max_size=6)),
    )
    return codec.encode_request(header, obj)[4:]


FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    """Arbitrary bytes decode or raise a ProtocolError subclass."""
    _decode_tolerantly(data)


@FUZZ
@given(
    st.sampled_from(REQUESTS).flatmap(
        lambda cls: st.tuples(
            st.just(message_spec(cls).api_key),
            st.integers(message_spec(cls).valid.low, message_spec(cls).valid.high),
        )
    ),
    st.binary(max_size=200),
)
def test_random_bodies_of_known_requests_raise_only_protocol_errors(
    key_version: tuple[int, int], body: bytes
) -> None:
    """A valid header followed by garbage decodes or raises a ProtocolError subclass."""
    api_key, version = key_version
    _decode_tolerantly(struct.pack(">hhih", api_key, version, 7, -1) + body)


@FUZZ
@given(
    valid_frames(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.integers(0, 10_000),
)
def test_mutated_valid_frames_raise_only_protocol_errors(
    frame: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    """Valid frames with bytes overwritten, or truncated, raise only ProtocolError."""
    data = bytearray(frame)
    for where, value in flips:
        if data:
            data[where % len(data)] = value
    _decode_tolerantly(bytes(data))
    _decode_tolerantly(frame[: cut % (len(frame) + 1)])
