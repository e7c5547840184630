"""``ClusterAcls`` over the in-memory store: two brokers writing the same key
concurrently keep both ACLs (compare-and-set), and each reads what both wrote."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from broker.cluster.acls import ClusterAcls
from broker.cluster.cache import MetadataCache
from broker.cluster.fake import MemoryStore
from broker.cluster.keys import Keys
from broker.security.acl_binding import AclBinding, AclFilter, Permission, make_binding

pytestmark = pytest.mark.anyio


def _binding(user: str, permission: int = 3) -> AclBinding:
    return make_binding(
        resource_type=2,
        name="orders",
        pattern=3,
        principal=f"User:{user}",
        host="*",
        operation=3,
        permission=permission,
    )


async def _pump(store: MemoryStore, cache: MetadataCache, keys: Keys) -> None:
    snapshot = await store.get_prefix(keys.prefix + "/")
    cache.load(snapshot)
    async for event in store.watch_prefix(keys.prefix + "/", snapshot.revision + 1):
        cache.apply([event])


async def test_concurrent_writers_on_one_key_keep_every_acl() -> None:
    """Brokers 1 and 2 add ACLs to the same resource at once: none is lost, both
    see all of them, and a delete through one is seen by the other."""
    store, keys = MemoryStore(), Keys("/c")
    caches = [MetadataCache(keys, n, "c") for n in (1, 2)]
    brokers = [ClusterAcls(store, keys, c, timeout_s=10) for c in caches]
    users = [f"u{i}" for i in range(8)]
    async with anyio.create_task_group() as tg:
        for cache in caches:
            tg.start_soon(_pump, store, cache, keys)
        await anyio.lowlevel.checkpoint()  # the pumps load before the writes
        async with anyio.create_task_group() as writers:
            for i, user in enumerate(users):
                writers.start_soon(brokers[i % 2].create, [_binding(user)])
        expected = {_binding(u) for u in users}
        assert set(brokers[0].bindings()) == expected
        with anyio.fail_after(10):
            while set(brokers[1].bindings()) != expected:
                await caches[1].wait_changed(caches[1].version)
        deny = _binding("u0", permission=2)
        await brokers[1].create([deny])
        with anyio.fail_after(10):
            while deny not in brokers[0].bindings():
                await caches[0].wait_changed(caches[0].version)
        matched = await brokers[0].delete([AclFilter(permission=Permission.DENY)])
        assert matched == [[deny]]
        assert set(brokers[0].bindings()) == expected
        tg.cancel_scope.cancel()
