"""Every registered message, in every version, survives encode → decode unchanged."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.headers import RequestHeader
from protocol.messages import MODULES, load_all
from protocol.schema import REGISTRY, message_spec
from tests.strategies import messages

# Messages load lazily per API key; these tests cover every schema.
load_all()
assert len(REGISTRY) == 2 * len(MODULES)

CASES = [
    pytest.param(cls, version, id=f"{cls.__name__}-v{version}")
    for (_key, _kind), cls in sorted(
        REGISTRY.items(), key=lambda kv: (kv[0][0], kv[0][1])
    )
    for version in range(message_spec(cls).valid.low, message_spec(cls).valid.high + 1)
]

FAST = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize(("cls", "version"), CASES)
def test_message_round_trips(cls: type, version: int) -> None:
    """Encoding then decoding any valid instance gives back an equal instance."""

    @FAST
    @given(messages(cls, version))
    def check(obj: object) -> None:
        data = codec.encode(obj, version)
        assert codec.decode(cls, version, data) == obj
        # The encoding is canonical: decoding and re-encoding gives the same bytes.
        assert codec.encode(codec.decode(cls, version, data), version) == data

    check()


@pytest.mark.parametrize(("cls", "version"), CASES)
def test_frame_round_trips(cls: type, version: int) -> None:
    """Whole frames with headers round-trip through the request/response entry points."""
    spec = message_spec(cls)

    @FAST
    @given(
        messages(cls, version),
        st.integers(-(2**31), 2**31 - 1),
        st.none() | st.text(max_size=8),
    )
    def check(obj: object, correlation_id: int, client_id: str | None) -> None:
        header = RequestHeader(
            request_api_key=spec.api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id=client_id,
        )
        if spec.kind == "request":
            frame = codec.encode_request(header, obj)
            assert int.from_bytes(frame[:4], "big") == len(frame) - 4
            got_header, got = codec.decode_request(frame[4:])
            assert got_header == header
            assert got == obj
        else:
            data = b"".join(codec.encode_response(header, obj))
            assert int.from_bytes(data[:4], "big") == len(data) - 4
            response_header, got = codec.decode_response(
                spec.api_key, version, data[4:]
            )
            assert response_header.correlation_id == correlation_id
            assert got == obj

    check()
