"""The static message index (protocol.messages) matches what the modules register."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import protocol.messages as package
from protocol import codec
from protocol.messages import MODULES, SUPPORTED, load_all
from protocol.schema import REGISTRY, message_spec


def test_index_matches_registered_modules() -> None:
    """Every module is indexed under the API key its request and response declare."""
    load_all()
    on_disk = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert set(MODULES.values()) == on_disk
    registered: dict[int, set[str]] = {}
    for (api_key, _kind), cls in REGISTRY.items():
        registered.setdefault(api_key, set()).add(cls.__module__.rsplit(".", 1)[1])
    assert {k: {v} for k, v in MODULES.items()} == registered
    assert all(
        (k, kind) in REGISTRY for k in MODULES for kind in ("request", "response")
    )


def test_static_supported_versions_match_schemas() -> None:
    """SUPPORTED is each API's request ∩ response version range."""
    load_all()
    computed = {}
    for api_key in MODULES:
        req = message_spec(REGISTRY[(api_key, "request")]).valid
        resp = message_spec(REGISTRY[(api_key, "response")]).valid
        computed[api_key] = (max(req.low, resp.low), min(req.high, resp.high))
    assert computed == SUPPORTED
    assert codec.supported_versions() == SUPPORTED


def test_codec_loads_one_module_on_first_use() -> None:
    """Importing the codec loads no message module; decoding a Produce loads only produce."""
    code = (
        "import sys\n"
        "from protocol import codec\n"
        "from protocol.headers import RequestHeader\n"
        "from protocol.messages.api_versions import ApiVersionsRequest\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.startswith('protocol.messages.'))\n"
        "assert loaded() == ['protocol.messages.api_versions'], loaded()\n"
        "assert codec.supported_versions()[0] == (0, 13)\n"
        "assert loaded() == ['protocol.messages.api_versions'], loaded()\n"
        "cls = codec.request_class(0)\n"
        "frame = codec.encode_request(RequestHeader(request_api_key=0, request_api_version=9,"
        " correlation_id=1, client_id='c'), cls(acks=1, timeout_ms=5))\n"
        "header, body = codec.decode_request(frame[4:])\n"
        "assert body == cls(acks=1, timeout_ms=5)\n"
        "assert loaded() == ['protocol.messages.api_versions', 'protocol.messages.produce'], loaded()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
