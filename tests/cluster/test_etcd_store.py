"""The etcd store against a real etcd 3.4: what the cluster assumes of etcd holds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from structlog.testing import capture_logs

from broker.cluster.etcd import EtcdStore
from broker.cluster.store import (
    Compare,
    Delete,
    Event,
    LeaseExpired,
    Put,
    StoreUnavailable,
)
from tests.cluster.etcd import EtcdProcess

pytestmark = pytest.mark.anyio


def _store(etcd: EtcdProcess, timeout_s: float = 3.0) -> EtcdStore:
    return EtcdStore([("127.0.0.1", etcd.client_port)], timeout_s=timeout_s)


async def _next(events: AsyncIterator[Event], wait_s: float = 10) -> Event:
    with anyio.fail_after(wait_s):
        return await anext(events)


async def test_get_put_delete_and_prefix_read(etcd: EtcdProcess) -> None:
    """Puts are read back with their revisions; a prefix read is one revision."""
    store = _store(etcd)
    try:
        assert await store.get("/t/a") is None
        r1 = await store.put("/t/a", b"1")
        r2 = await store.put("/t/b/c", b"2")
        assert r2 > r1
        kv = await store.get("/t/a")
        assert kv is not None
        assert (kv.value, kv.create_revision, kv.mod_revision) == (b"1", r1, r1)
        snap = await store.get_prefix("/t/")
        assert [(i.key, i.value) for i in snap.items] == [
            ("/t/a", b"1"),
            ("/t/b/c", b"2"),
        ]
        assert snap.revision == r2
        r3 = await store.delete("/t/", prefix=True)
        assert r3 > r2
        assert (await store.get_prefix("/t/")).items == ()
    finally:
        await store.close()


async def test_txn_compares_absent_mod_and_create_revision(etcd: EtcdProcess) -> None:
    """A transaction applies only when every compare holds; a create-revision guard
    fails once the key was deleted and created again."""
    store = _store(etcd)
    try:
        ok, rev = await store.txn([Compare("/t/k", absent=True)], [Put("/t/k", b"a")])
        assert ok
        ok, _ = await store.txn([Compare("/t/k", absent=True)], [Put("/t/k", b"b")])
        assert not ok
        kv = await store.get("/t/k")
        assert kv is not None
        assert kv.value == b"a"
        assert kv.create_revision == rev
        ok, rev2 = await store.txn(
            [Compare("/t/k", mod_revision=rev)], [Put("/t/k", b"c"), Put("/t/x", b"")]
        )
        assert ok
        ok, _ = await store.txn(
            [Compare("/t/k", mod_revision=rev)], [Put("/t/k", b"d")]
        )
        assert not ok  # stale mod revision
        # the create revision survives updates (a controller epoch guard)...
        ok, _ = await store.txn(
            [Compare("/t/k", create_revision=rev)], [Delete("/t/x")]
        )
        assert ok
        assert await store.get("/t/x") is None
        # ...and not a delete + re-create
        await store.delete("/t/k")
        await store.put("/t/k", b"again")
        ok, _ = await store.txn(
            [Compare("/t/k", create_revision=rev)], [Put("/t/y", b"")]
        )
        assert not ok
        assert await store.get("/t/y") is None
        assert rev2 > rev
    finally:
        await store.close()


async def test_lease_binds_keys_until_it_expires(etcd: EtcdProcess) -> None:
    """Keys bound to a lease live while it is kept alive and go when it expires;
    keep-alive and puts on the expired lease raise LeaseExpired."""
    store = _store(etcd)
    try:
        lease = await store.grant_lease(2)
        ok, _ = await store.txn(
            [Compare("/t/me", absent=True)], [Put("/t/me", b"1", lease=lease)]
        )
        assert ok
        kv = await store.get("/t/me")
        assert kv is not None
        assert kv.lease == lease
        for _ in range(3):  # 3 s in all: past the TTL, kept alive
            await anyio.sleep(1)
            assert await store.keep_alive(lease) >= 1
        assert await store.get("/t/me") is not None
        with anyio.fail_after(10):
            while await store.get("/t/me") is not None:  # noqa: ASYNC110
                await anyio.sleep(0.2)
        with pytest.raises(LeaseExpired):
            await store.keep_alive(lease)
        with pytest.raises(LeaseExpired):
            await store.put("/t/other", b"", lease=lease)
        with pytest.raises(LeaseExpired):
            await store.txn([], [Put("/t/other", b"", lease=lease)])
        await store.revoke_lease(lease)  # already gone: not an error
    finally:
        await store.close()


async def test_revoke_deletes_bound_keys_at_once(etcd: EtcdProcess) -> None:
    """Revoking a lease deletes its keys without waiting for the TTL."""
    store = _store(etcd)
    try:
        lease = await store.grant_lease(60)
        await store.put("/t/me", b"1", lease=lease)
        await store.revoke_lease(lease)
        assert await store.get("/t/me") is None
    finally:
        await store.close()


async def test_watch_from_a_revision_sees_history_then_live_changes(
    etcd: EtcdProcess,
) -> None:
    """A watch from an old revision replays what followed it, in order, then the
    changes made while it runs."""
    store = _store(etcd)
    try:
        r1 = await store.put("/t/a", b"1")
        await store.put("/t/a", b"2")
        await store.delete("/t/a")
        await store.put("/other", b"x")  # outside the prefix
        events = store.watch_prefix("/t/", r1)
        seen = [await _next(events) for _ in range(3)]
        assert [(e.key, e.value) for e in seen] == [
            ("/t/a", b"1"),
            ("/t/a", b"2"),
            ("/t/a", None),
        ]
        assert [e.mod_revision for e in seen] == sorted(e.mod_revision for e in seen)
        r = await store.put("/t/b", b"3")
        e = await _next(events)
        assert (e.key, e.value, e.mod_revision, e.create_revision) == (
            "/t/b",
            b"3",
            r,
            r,
        )
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_watch_of_compacted_history_raises_store_unavailable(
    etcd: EtcdProcess,
) -> None:
    """A watch from a revision etcd compacted away ends with StoreUnavailable."""
    store = _store(etcd)
    try:
        r1 = await store.put("/t/a", b"1")
        await store.put("/t/a", b"2")
        r3 = await store.put("/t/a", b"3")
        etcd.ctl("compaction", str(r3))
        events = store.watch_prefix("/t/", r1)
        with pytest.raises(StoreUnavailable, match="compacted"):
            await _next(events)
    finally:
        await store.close()


async def test_unreachable_etcd_raises_store_unavailable_within_the_timeout(
    etcd: EtcdProcess,
) -> None:
    """Calls to a stopped etcd fail with StoreUnavailable, bounded by the timeout."""
    etcd.stop()
    store = _store(etcd, timeout_s=1.0)
    try:
        with anyio.fail_after(10), pytest.raises(StoreUnavailable):
            await store.get("/t/a")
        with anyio.fail_after(10), pytest.raises(StoreUnavailable):
            await store.grant_lease(5)
    finally:
        await store.close()


async def test_second_endpoint_is_tried_when_the_first_is_down(
    etcd: EtcdProcess,
) -> None:
    """With a dead first endpoint, calls go to the next one."""
    from tests._broker import free_port

    store = EtcdStore(
        [("127.0.0.1", free_port()), ("127.0.0.1", etcd.client_port)], timeout_s=2
    )
    try:
        with anyio.fail_after(10):
            await store.put("/t/a", b"1")
            kv = await store.get("/t/a")
        assert kv is not None
        assert kv.value == b"1"
        assert store.endpoint == etcd.endpoint
    finally:
        await store.close()


async def test_watch_and_lease_survive_an_etcd_restart(etcd: EtcdProcess) -> None:
    """Across an etcd restart a watch resumes after the last event it delivered
    (logging the outage once) and a kept-alive lease and its keys survive."""
    store = _store(etcd, timeout_s=1.0)
    try:
        lease = await store.grant_lease(5)
        await store.put("/t/me", b"1", lease=lease)
        r = await store.put("/t/a", b"1")
        events = store.watch_prefix("/t/", r)
        assert (await _next(events)).key == "/t/a"
        with capture_logs() as logs:
            etcd.stop()
            with pytest.raises(StoreUnavailable):
                await store.keep_alive(lease)
            async with anyio.create_task_group() as tg:
                got: list[Event] = []

                async def read_one() -> None:
                    got.append(await _next(events, wait_s=30))

                tg.start_soon(read_one)
                await anyio.sleep(1.5)  # the watch retries while etcd is down
                await anyio.to_thread.run_sync(etcd.start)
                with anyio.fail_after(15):
                    while True:
                        try:
                            await store.keep_alive(lease)
                            break
                        except StoreUnavailable:
                            await anyio.sleep(0.2)
                await store.put("/t/b", b"2")
            assert [(e.key, e.value) for e in got] == [("/t/b", b"2")]
        names = [e["event"] for e in logs]
        assert names.count("etcd_unavailable") == 1
        assert names.count("etcd_reconnected") == 1
        kv = await store.get("/t/me")
        assert kv is not None
        assert kv.lease == lease
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_a_call_cut_short_by_its_cancel_scope_stays_inside_that_scope(
    etcd: EtcdProcess,
) -> None:
    """A scope cancelled while a call is in flight catches the cancellation: grpc's
    own CancelledError never escapes it (it once stopped the cluster service)."""
    store = _store(etcd)
    try:
        await store.put("/c/k", b"v")
        caught = 0
        for i in range(300):
            # deadlines spread over a call's round trip, so some land inside grpc
            with anyio.move_on_after(i % 30 * 0.0001) as scope:
                await store.txn([], [Put("/c/k", b"v")])
            caught += scope.cancelled_caught
        assert caught > 0
    finally:
        await store.close()
