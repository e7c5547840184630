"""The watched cache keeps the cluster's ACLs: one key per resource pattern."""

from __future__ import annotations

from structlog.testing import capture_logs

from broker.cluster.acl_records import encode_acls, key_parts
from broker.cluster.cache import MetadataCache
from broker.cluster.keys import Keys
from broker.cluster.store import Event
from broker.security.acl_binding import AclBinding, make_binding


def _binding(name: str, op: int) -> AclBinding:
    return make_binding(
        resource_type=3,  # a group: any name, a slash too
        name=name,
        pattern=4,
        principal="User:alice",
        host="*",
        operation=op,
        permission=3,
    )


def test_acl_keys_are_applied_and_removed() -> None:
    """A put adds the pattern's ACLs (names with slashes survive the quoting), a
    delete removes them, a bad value is logged and skipped; each bumps acl_version."""
    keys = Keys("/t")
    cache = MetadataCache(keys, 1, "c")
    read, write = _binding("team/a", 3), _binding("team/a", 4)
    key = keys.acl(*key_parts(read))
    assert key == "/t/acls/prefixed/Group/team%2Fa"
    before = cache.acl_version
    cache.apply([Event(key, encode_acls([read, write]), 5, 5)])
    assert cache.acl_bindings() == [read, write]
    assert cache.acl_version > before
    with capture_logs() as logs:
        cache.apply([Event("/t/acls/literal/Topic/x", b"{not json", 6, 6)])
    assert [e["event"] for e in logs] == ["cluster_key_invalid"]
    assert cache.acl_bindings() == [read, write]
    cache.apply([Event(key, None, 5, 7)])
    assert cache.acl_bindings() == []
