"""The static handler index and advertised table of broker.net.dispatch match the handlers."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import broker.handlers as package
from broker.net.dispatch import (
    ADVERTISED,
    HANDLER_MODULES,
    HANDLERS,
    advertised_versions,
    computed_advertised_versions,
    load_handlers,
)


def test_handler_index_matches_registered_handlers() -> None:
    """Every handler module is indexed under the API key it registers, by its name."""
    load_handlers()
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    api_modules = {m for m in modules if not m.startswith("_")}
    assert set(HANDLER_MODULES.values()) == api_modules
    assert {k: s.fn.__module__.rsplit(".", 1)[1] for k, s in HANDLERS.items()} == (
        HANDLER_MODULES
    )
    assert {k: s.name for k, s in HANDLERS.items()} == HANDLER_MODULES


def test_static_advertised_table_matches_handlers_and_codec() -> None:
    """ADVERTISED is codec support ∩ each handler's [advertise_min, max_version]."""
    load_handlers()
    assert computed_advertised_versions() == ADVERTISED == advertised_versions()


def test_handlers_load_on_first_use() -> None:
    """Starting the server imports no API handler module; is_handled loads just the one asked."""
    code = (
        "import sys\n"
        "import broker.server\n"
        "from broker.net import dispatch\n"
        "loaded = lambda p: sorted(m for m in sys.modules if m.startswith(p))\n"
        "assert loaded('broker.handlers.') == []\n"
        "assert loaded('protocol.messages.') == ['protocol.messages.api_versions']\n"
        "assert dispatch.advertised_versions()[0] == (0, 13)\n"
        "assert dispatch.api_name(1) == 'fetch'\n"
        "assert dispatch.is_handled(3, 12) and not dispatch.is_handled(2, 0)\n"
        "assert 'broker.handlers.metadata' in sys.modules\n"
        "assert 'broker.handlers.fetch' not in sys.modules and 'broker.handlers.produce' not in sys.modules\n"
        "assert not dispatch.is_handled(99, 0)\n"
        "print(loaded('protocol.messages.'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert "protocol.messages.list_offsets" in out  # loaded for is_handled(2, 0)
