"""The in-memory store keeps etcd's semantics the controller relies on: one
revision per write, create and mod revisions, transactions that apply all or
nothing, leases on a manual clock, ordered watches from a revision."""

from __future__ import annotations

import anyio
import pytest

from broker.cluster.fake import MemoryStore
from broker.cluster.store import (
    Compare,
    Delete,
    Event,
    LeaseExpired,
    Put,
    StoreUnavailable,
)

pytestmark = pytest.mark.anyio


async def test_revisions_grow_once_per_write() -> None:
    s = MemoryStore()
    r1 = await s.put("/p/a", b"1")
    r2 = await s.put("/p/a", b"2")
    assert r2 == r1 + 1
    kv = await s.get("/p/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"2", r1, r2)
    ok, r3 = await s.txn([], [Put("/p/b", b"x"), Put("/p/c", b"y")])
    assert ok
    assert r3 == r2 + 1
    b, c = await s.get("/p/b"), await s.get("/p/c")
    assert b is not None
    assert c is not None
    assert b.mod_revision == c.mod_revision == r3
    # Deleting nothing changes nothing.
    assert await s.delete("/p/none") == r3


async def test_txn_applies_all_or_nothing() -> None:
    s = MemoryStore()
    rev = await s.put("/p/a", b"1")
    ok, _ = await s.txn(
        [Compare("/p/a", mod_revision=rev), Compare("/p/b", absent=True)],
        [Put("/p/b", b"2"), Delete("/p/a")],
    )
    assert ok
    assert await s.get("/p/a") is None
    ok, after = await s.txn([Compare("/p/b", absent=True)], [Put("/p/c", b"3")])
    assert not ok
    assert await s.get("/p/c") is None
    assert after == s.revision


async def test_compare_create_revision_guards_a_stale_writer() -> None:
    s = MemoryStore()
    epoch = await s.put("/p/controller", b"1")
    guard = Compare("/p/controller", create_revision=epoch)
    assert (await s.txn([guard], [Put("/p/x", b"1")]))[0]
    await s.put("/p/controller", b"1")  # a rewrite keeps the create revision
    assert (await s.txn([guard], [Put("/p/x", b"2")]))[0]
    await s.delete("/p/controller")
    await s.put("/p/controller", b"2")  # a new controller: a new epoch
    assert not (await s.txn([guard], [Put("/p/x", b"3")]))[0]
    x = await s.get("/p/x")
    assert x is not None
    assert x.value == b"2"


async def test_txn_refuses_what_etcd_refuses() -> None:
    s = MemoryStore()
    with pytest.raises(ValueError, match="duplicate"):
        await s.txn([], [Put("/p/a", b"1"), Put("/p/a", b"2")])
    with pytest.raises(ValueError, match="duplicate"):
        await s.txn([], [Put("/p/a/1", b"1"), Delete("/p/a/", prefix=True)])
    with pytest.raises(ValueError, match="too many"):
        await s.txn([], [Put(f"/p/{i}", b"") for i in range(129)])
    assert s.writes == 0


async def test_prefix_delete_and_get_prefix() -> None:
    s = MemoryStore()
    for k in ("/p/t/0", "/p/t/1", "/p/t/10", "/p/u/0"):
        await s.put(k, b"")
    snap = await s.get_prefix("/p/t/")
    assert [kv.key for kv in snap.items] == ["/p/t/0", "/p/t/1", "/p/t/10"]
    assert snap.revision == s.revision
    rev = await s.delete("/p/t/", prefix=True)
    assert [kv.key for kv in (await s.get_prefix("/p/")).items] == ["/p/u/0"]
    assert rev == snap.revision + 1


async def test_lease_keys_vanish_when_it_expires() -> None:
    s = MemoryStore()
    lease = await s.grant_lease(9)
    await s.put("/p/brokers/1", b"x", lease=lease)
    s.advance(6)
    assert await s.keep_alive(lease) == 9
    s.advance(6)
    assert await s.get("/p/brokers/1") is not None
    s.advance(3)
    assert await s.get("/p/brokers/1") is None
    with pytest.raises(LeaseExpired):
        await s.keep_alive(lease)
    with pytest.raises(LeaseExpired):
        await s.put("/p/brokers/1", b"x", lease=lease)


async def test_revoke_and_expire_delete_the_leases_keys_in_one_revision() -> None:
    s = MemoryStore()
    lease = await s.grant_lease(9)
    await s.txn([], [Put("/p/a", b"", lease), Put("/p/b", b"", lease)])
    before = s.revision
    await s.revoke_lease(lease)
    assert s.revision == before + 1
    assert (await s.get_prefix("/p/")).items == ()


async def test_watch_delivers_changes_from_a_revision_in_order() -> None:
    s = MemoryStore()
    r1 = await s.put("/p/a", b"1")
    await s.put("/q/ignored", b"")
    await s.put("/p/a", b"2")
    seen: list[Event] = []

    async def watch() -> None:
        async for ev in s.watch_prefix("/p/", r1 + 1):
            seen.append(ev)
            if ev.value is None:
                return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            await s.put("/p/b", b"3")
            await s.delete("/p/a")
    assert [(e.key, e.value) for e in seen] == [
        ("/p/a", b"2"),
        ("/p/b", b"3"),
        ("/p/a", None),
    ]
    revisions = [e.mod_revision for e in seen]
    assert revisions == sorted(revisions)
    assert seen[0].create_revision == r1


async def test_watch_before_a_compaction_fails() -> None:
    s = MemoryStore()
    for i in range(5):
        await s.put("/p/a", str(i).encode())
    s.compact(s.revision - 1)
    with pytest.raises(StoreUnavailable):
        async for _ in s.watch_prefix("/p/", 2):
            pass


async def test_an_unavailable_store_raises() -> None:
    s = MemoryStore()
    s.unavailable = True
    with pytest.raises(StoreUnavailable):
        await s.get("/p/a")
    with pytest.raises(StoreUnavailable):
        await s.txn([], [Put("/p/a", b"")])
