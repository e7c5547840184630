"""``EtcdStore``: the :class:`~broker.cluster.store.Store` seam over etcd's v3 API.

Uses ``aetcd`` for the gRPC channel and the generated stubs and calls the stubs
directly (a transaction's and a delete's answer carry the revision the cluster
needs, which aetcd's helpers drop). Only cluster mode imports this module (and
with it grpc): a single node never loads it.

Failure model:

- every unary call is bounded (``timeout_s``); a gRPC error or a timeout becomes
  :class:`StoreUnavailable`, except "requested lease not found", which is
  :class:`LeaseExpired` (the lease expired or was revoked);
- with several endpoints, a call that finds one unreachable tries the next;
- :meth:`EtcdStore.watch_prefix` never gives up on an outage: it reconnects with
  back-off and resumes after the last revision it delivered. The store logs
  ``etcd_unavailable`` once when an outage starts (and calls ``on_unavailable``,
  which counts it in the broker's metrics) and ``etcd_reconnected`` once when a
  watch is up again, however many watches it runs (the cluster service's, and the
  controller's while this broker is elected). Only a compacted history ends it (:class:`StoreUnavailable`: the
  caller re-reads with :meth:`EtcdStore.get_prefix` and watches again).

What etcd 3.4 does, checked against a real etcd (tests/cluster/test_etcd_store.py):
a watch from a compacted revision answers ``created`` and then ``canceled`` with
``compact_revision`` set; keep-alive of an expired lease answers TTL 0 (no
error); put or revoke with an unknown lease fails with NOT_FOUND "requested lease
not found"; leases survive an etcd restart (their TTL starts again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aetcd
import aetcd.rpc as rpc
import anyio
import grpc
import structlog
from aetcd.utils import prefix_range_end

from broker.cluster.store import (
    Compare,
    Delete,
    Event,
    KeyValue,
    LeaseExpired,
    Op,
    Put,
    Snapshot,
    StoreUnavailable,
)

log = structlog.get_logger("broker.cluster.etcd")

T = TypeVar("T")

_LEASE_NOT_FOUND = "requested lease not found"
_MAX_MESSAGE = 64 * 1024 * 1024  # a full read of a big cluster's prefix
# gRPC's default reconnect back-off grows to 120 s: after an etcd restart the
# channel would wait that long before trying again. Cap it near the watch's own.
_CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1_000,
    "grpc.max_receive_message_length": _MAX_MESSAGE,
    "grpc.max_send_message_length": _MAX_MESSAGE,
    # notice a silently dead connection (etcd's minimum ping interval is 5 s)
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}
_WATCH_BACKOFF_S = (0.1, 2.0)  # first and largest pause between watch attempts
# what a call on a failing or closed channel raises
_CALL_ERRORS: tuple[type[Exception], ...] = (
    grpc.RpcError,
    grpc.aio.BaseError,
    aetcd.ClientError,
    TimeoutError,
)
_WATCH_ERRORS: tuple[type[Exception], ...] = (
    grpc.RpcError,
    grpc.aio.BaseError,
    aetcd.ClientError,
    StoreUnavailable,
)


def _range_end(prefix: bytes) -> bytes:
    """etcd's range end of a prefix: the prefix with its last byte incremented."""
    return bytes(prefix_range_end(prefix))


def _error(e: BaseException, what: str) -> Exception:
    """The store error for a failed call."""
    if isinstance(e, grpc.aio.AioRpcError):  # also a grpc.RpcError
        details = e.details() or ""
        if e.code() == grpc.StatusCode.NOT_FOUND and _LEASE_NOT_FOUND in details:
            return LeaseExpired(details)
        return StoreUnavailable(f"etcd {what}: {e.code().name} {details}".strip())
    if isinstance(e, TimeoutError):
        return StoreUnavailable(f"etcd {what}: timed out")
    return StoreUnavailable(f"etcd {what}: {e}")


def _compare(c: Compare) -> Any:
    key = c.key.encode()
    eq = rpc.Compare.EQUAL
    if c.absent:
        # a key that does not exist has create revision 0
        return rpc.Compare(key=key, target=rpc.Compare.CREATE, result=eq)
    if c.mod_revision is not None:
        return rpc.Compare(
            key=key, target=rpc.Compare.MOD, result=eq, mod_revision=c.mod_revision
        )
    if c.create_revision is not None:
        return rpc.Compare(
            key=key,
            target=rpc.Compare.CREATE,
            result=eq,
            create_revision=c.create_revision,
        )
    raise ValueError(f"empty compare on {c.key!r}")


def _op(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(
            request_put=rpc.PutRequest(
                key=op.key.encode(), value=op.value, lease=op.lease
            )
        )
    return rpc.RequestOp(request_delete_range=_delete_request(op))


def _delete_request(op: Delete) -> Any:
    key = op.key.encode()
    if op.prefix:
        return rpc.DeleteRangeRequest(key=key, range_end=_range_end(key))
    return rpc.DeleteRangeRequest(key=key)


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=bytes(kv.key).decode(),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        lease=int(kv.lease),
    )


class _Compacted(Exception):
    def __init__(self, revision: int) -> None:
        super().__init__(f"etcd history compacted up to revision {revision}")


class EtcdStore:
    """The cluster's store over one etcd cluster (one or more client endpoints)."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        timeout_s: float = 5.0,
        on_unavailable: Callable[[], None] | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self._endpoints = tuple(endpoints)
        self._timeout_s = timeout_s
        self._on_unavailable = on_unavailable  # once per outage, with the event
        self._down = False  # a watch failed and none is up again yet
        self._index = 0
        self._client: aetcd.Client | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint in use, ``host:port``."""
        host, port = self._endpoints[self._index]
        return f"{host}:{port}"

    async def _current(self) -> aetcd.Client:
        if self._client is None:
            host, port = self._endpoints[self._index]
            client = aetcd.Client(
                host,
                port,
                timeout=self._timeout_s,
                options=_CHANNEL_OPTIONS,
            )
            await client.connect()  # builds the channel and stubs; no I/O yet
            self._client = client
        return self._client

    async def _next_endpoint(self, failed: aetcd.Client) -> None:
        """Move to the next endpoint, if ``failed`` is still the one in use."""
        current = self._client
        if len(self._endpoints) == 1 or current is None or current is not failed:
            return
        self._client = None
        self._index = (self._index + 1) % len(self._endpoints)
        with anyio.move_on_after(1, shield=True):
            await current.close()

    async def _call(self, what: str, fn: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """Run one unary call, bounded, trying each endpoint at most once."""
        error: Exception = StoreUnavailable(f"etcd {what}: no endpoint")
        for _ in self._endpoints:
            client = await self._current()
            try:
                with anyio.fail_after(self._timeout_s):
                    return await fn(client)
            except asyncio.CancelledError:
                await _grpc_cancelled()
                error = StoreUnavailable(f"etcd {what}: the call was cancelled")
                await self._next_endpoint(client)
            except _CALL_ERRORS as e:
                error = _error(e, what)
                if isinstance(error, LeaseExpired):
                    raise error from e
                await self._next_endpoint(client)
        raise error

    # -- the Store protocol ------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        async def call(c: aetcd.Client) -> KeyValue | None:
            r = await c.kvstub.Range(
                rpc.RangeRequest(key=key.encode()), timeout=self._timeout_s
            )
            return _kv(r.kvs[0]) if r.kvs else None

        return await self._call("get", call)

    async def get_prefix(self, prefix: str) -> Snapshot:
        async def call(c: aetcd.Client) -> Snapshot:
            p = prefix.encode()
            r = await c.kvstub.Range(
                rpc.RangeRequest(key=p, range_end=_range_end(p)),
                timeout=self._timeout_s,
            )
            return Snapshot(
                items=tuple(_kv(kv) for kv in r.kvs), revision=int(r.header.revision)
            )

        return await self._call("get_prefix", call)

    async def txn(
        self, compares: Sequence[Compare], ops: Sequence[Op]
    ) -> tuple[bool, int]:
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares], success=[_op(o) for o in ops]
        )

        async def call(c: aetcd.Client) -> tuple[bool, int]:
            r = await c.kvstub.Txn(request, timeout=self._timeout_s)
            return bool(r.succeeded), int(r.header.revision)

        return await self._call("txn", call)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        async def call(c: aetcd.Client) -> int:
            r = await c.kvstub.Put(
                rpc.PutRequest(key=key.encode(), value=value, lease=lease),
                timeout=self._timeout_s,
            )
            return int(r.header.revision)

        return await self._call("put", call)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        request = _delete_request(Delete(key, prefix=prefix))

        async def call(c: aetcd.Client) -> int:
            r = await c.kvstub.DeleteRange(request, timeout=self._timeout_s)
            return int(r.header.revision)

        return await self._call("delete", call)

    async def grant_lease(self, ttl_s: int) -> int:
        async def call(c: aetcd.Client) -> int:
            r = await c.leasestub.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl_s), timeout=self._timeout_s
            )
            if r.error:
                raise StoreUnavailable(f"etcd grant_lease: {r.error}")
            return int(r.ID)

        return await self._call("grant_lease", call)

    async def keep_alive(self, lease: int) -> int:
        async def call(c: aetcd.Client) -> int:
            stream = c.leasestub.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease)]), timeout=self._timeout_s
            )
            try:
                async for reply in stream:
                    return int(reply.TTL)
            finally:
                stream.cancel()
            raise StoreUnavailable("etcd keep_alive: no answer")

        ttl = await self._call("keep_alive", call)
        if ttl <= 0:
            raise LeaseExpired(f"lease {lease:x} has expired")
        return ttl

    async def revoke_lease(self, lease: int) -> None:
        """Revoke a lease (one that is already gone is not an error)."""

        async def call(c: aetcd.Client) -> None:
            await c.leasestub.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease), timeout=self._timeout_s
            )

        with contextlib.suppress(LeaseExpired):
            await self._call("revoke_lease", call)

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[Event]:
        """Every change under ``prefix`` from ``start_revision`` on (see the module
        docstring for outages and compaction)."""
        next_revision = start_revision
        pause = _WATCH_BACKOFF_S[0]
        while True:
            client = await self._current()
            try:
                async for batch in self._watch_stream(client, prefix, next_revision):
                    if self._down:
                        self._down = False
                        log.info("etcd_reconnected", endpoint=self.endpoint)
                    pause = _WATCH_BACKOFF_S[0]
                    for event in batch:
                        yield event
                        next_revision = event.mod_revision + 1
            except _Compacted as e:
                raise StoreUnavailable(str(e)) from e
            except asyncio.CancelledError:
                await _grpc_cancelled()
            except _WATCH_ERRORS as e:
                if not self._down:
                    self._down = True
                    log.warning(
                        "etcd_unavailable",
                        endpoint=self.endpoint,
                        error=str(_error(e, "watch")),
                    )
                    if self._on_unavailable is not None:
                        self._on_unavailable()
                await self._next_endpoint(client)
            await anyio.sleep(pause)
            pause = min(pause * 2, _WATCH_BACKOFF_S[1])

    async def _watch_stream(
        self, client: aetcd.Client, prefix: str, start_revision: int
    ) -> AsyncIterator[list[Event]]:
        """One watch stream: each response's events, until the stream fails."""
        p = prefix.encode()
        stub = rpc.WatchStub(client.channel)
        call = stub.Watch()
        try:
            await call.write(
                rpc.WatchRequest(
                    create_request=rpc.WatchCreateRequest(
                        key=p, range_end=_range_end(p), start_revision=start_revision
                    )
                )
            )
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise StoreUnavailable("etcd closed the watch stream")
                if response.compact_revision:
                    raise _Compacted(int(response.compact_revision))
                if response.canceled:
                    raise StoreUnavailable(
                        f"etcd cancelled the watch: {response.cancel_reason}"
                    )
                if response.events:
                    yield [
                        Event(
                            key=bytes(e.kv.key).decode(),
                            value=None
                            if e.type == rpc.Event.DELETE
                            else bytes(e.kv.value),
                            create_revision=int(e.kv.create_revision),
                            mod_revision=int(e.kv.mod_revision),
                        )
                        for e in response.events
                    ]
                elif response.created:
                    yield []  # the stream is up (ends an outage)
        finally:
            call.cancel()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(2, shield=True):
                await client.close()


async def _grpc_cancelled() -> None:
    """After grpc raised a bare ``CancelledError``: re-raise a real cancellation.

    grpc's asyncio calls raise ``asyncio.CancelledError()`` without a message when
    their call was cancelled locally. When that is our cancel scope cancelling the
    task (grpc's inner task swallowed the cancellation and the call ended), anyio
    would not recognise the bare exception as its own and it would cancel the
    enclosing task groups. A checkpoint delivers the scope's own cancellation if
    the task is being cancelled; otherwise the caller treats the call as failed.
    """
    await anyio.lowlevel.checkpoint()
