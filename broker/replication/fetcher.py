"""The replica fetcher: copies partitions from their leader with Kafka's own Fetch.

One :class:`ReplicaFetcher` per leader (Kafka's ``ReplicaFetcherThread``): for the
partitions it is given it loops Fetch (v12+, ``replica_id`` = this node,
``fetch_offset`` = the local log end, ``current_leader_epoch``,
``last_fetched_epoch``), appends what comes verbatim in a worker thread (offsets,
partition leader epochs and CRCs kept: ``PartitionLog.append_verbatim``) and makes
it durable (the broker's group commit, or ``PartitionLog.sync`` in a worker thread)
before it reports an offset that can raise the leader's high watermark or bring it
into the ISR. Below the high watermark it fetches again while the fsync runs, and
sends the next Fetch before it has appended the last answer
(:mod:`broker.replication.follower_sync` has the argument).

Truncation (KIP-101, KIP-279, KIP-320): when a partition is added or its leader
epoch changes, and the local log has an epoch, OffsetForLeaderEpoch asks the leader
where the local latest epoch ends and the log is cut there
(``AbstractFetcherThread.getOffsetTruncationState``); a Fetch answer naming a
``diverging_epoch`` cuts it the same way. Per partition errors:

- NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, unknown topic,
  not authorised: the partition stops and ``on_stop`` tells the owner, who re-reads the leader;
- OFFSET_OUT_OF_RANGE below the leader's log start: the local log restarts empty at
  the leader's log start; past the leader's end: truncation as above;
- anything else (KAFKA_STORAGE_ERROR, ...): retried after a back-off.

A lost connection is retried with exponential back-off (capped); after
``max_connect_failures`` failures in a row every partition stops with
NETWORK_EXCEPTION. Per partition the fetched offset, the leader's high watermark
and the lag are exposed (:class:`PartitionProgress`) so an owner can decide
"caught up".

Given the broker's producer state (:class:`ProducerStates`), the idempotent
producers' state of each partition follows what is appended (the batch headers are
read in the append's worker thread) and is rebuilt in a worker thread after a
truncation, so it is current when this broker comes to lead.

Log events: ``replica_fetch_started``, ``replica_truncated``,
``replica_caught_up``, ``replica_fetch_error``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import anyio
import structlog

from broker.durability.group_commit import GroupCommit
from broker.replication.fetch_round import (
    ZERO_UUID,
    FetcherSettings,
    PartitionProgress,
    Sent,
    TopicPartition,
    ahead,
    current_answers,
    fetch_request,
)
from broker.replication.follower_log import (
    ProducerStates,
    append_replicated,
    truncation_offset,
    whole_batches,
)
from broker.replication.follower_sync import FollowerSync
from broker.replication.leader_client import LeaderConnection, LeaderConnectionError
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchRequest,
    FetchResponse,
    PartitionData,
)
from protocol.messages.offset_for_leader_epoch import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from storage.errors import InvalidBatch, OffsetMismatch, StorageError
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.replication")

FETCH_KEY: Final = 1
OFFSET_FOR_LEADER_EPOCH_KEY: Final = 23
MIN_FETCH_VERSION: Final = 12  # diverging_epoch, last_fetched_epoch (KIP-320)
_MAX_TRUNCATION_ROUNDS: Final = 16
# The owner must re-read the leader (Kafka: the partition is removed from the thread).
STOPPING_ERRORS: Final = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.UNKNOWN_TOPIC_ID,
        ErrorCode.TOPIC_AUTHORIZATION_FAILED,
        ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
    }
)


StopCallback = Callable[[TopicPartition, ErrorCode], None]


class ReplicaFetcher:
    """Copies a set of partitions from one leader (see the module docstring)."""

    def __init__(
        self,
        *,
        node_id: int,
        leader_id: int,
        host: str,
        port: int,
        on_stop: StopCallback,
        commit: GroupCommit | None = None,
        settings: FetcherSettings | None = None,
        producers: ProducerStates | None = None,
    ) -> None:
        self.node_id = node_id
        self.leader_id = leader_id
        self.host = host
        self.port = port
        self.settings = settings or FetcherSettings()
        self._on_stop = on_stop
        self._sync = FollowerSync(
            commit, max_unsynced_bytes=self.settings.max_unsynced_bytes
        )
        self._producers = producers
        self._parts: dict[TopicPartition, PartitionProgress] = {}
        self._changed = anyio.Event()
        self.connect_failures = 0  # in a row; reset by an answered Fetch
        # The version of the last Fetch sent: v12 (topic names) unless every
        # partition fetched has its topic id, then the highest both sides speak.
        self.last_fetch_version: int | None = None

    # -- the owner's side ----------------------------------------------------------
    def add_partition(
        self, plog: PartitionLog, *, leader_epoch: int, topic_id: bytes = ZERO_UUID
    ) -> None:
        """Start copying ``plog``'s partition (again, if it was already here)."""
        tp = TopicPartition(plog.topic, plog.partition)
        self._parts[tp] = PartitionProgress(
            tp=tp,
            log=plog,
            topic_id=topic_id,
            leader_epoch=leader_epoch,
            fetch_offset=plog.log_end_offset,
            needs_truncation=self._check_epochs(plog),
        )
        self._wake()

    def set_leader_epoch(self, tp: TopicPartition, leader_epoch: int) -> None:
        """The leader's epoch changed: check the local log against it again."""
        part = self._parts.get(tp)
        if part is not None and part.leader_epoch != leader_epoch:
            part.leader_epoch = leader_epoch
            # The leader's high watermark may start lower in the new epoch: fsync
            # before the next Fetch reports anything (follower_sync.py).
            part.leader_high_watermark = -1
            part.needs_truncation = self._check_epochs(part.log)
            part.caught_up = False

    def remove_partition(self, tp: TopicPartition) -> None:
        """Stop copying ``tp`` (no callback)."""
        part = self._parts.pop(tp, None)
        if part is not None:
            self._sync.forget(part.log)

    def progress(self, tp: TopicPartition) -> PartitionProgress | None:
        """The partition's copy progress (None: not fetched by this fetcher)."""
        return self._parts.get(tp)

    @property
    def partitions(self) -> list[TopicPartition]:
        """The partitions being copied."""
        return list(self._parts)

    def _check_epochs(self, plog: PartitionLog) -> bool:
        """Whether OffsetForLeaderEpoch must check ``plog`` before it is fetched."""
        return plog.leader_epoch >= 0 and not self.settings.truncate_on_fetch

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _stop(self, part: PartitionProgress, code: ErrorCode) -> None:
        if self._parts.get(part.tp) is part:
            del self._parts[part.tp]
            self._on_stop(part.tp, code)

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        """Fetch until cancelled, or until every partition stopped after
        ``max_connect_failures`` failed connections in a row."""
        settings = self.settings
        backoff = settings.backoff_initial_s
        while True:
            if not self._parts:
                await self._changed.wait()
                continue
            try:
                conn = await LeaderConnection.connect(
                    self.host,
                    self.port,
                    client_id=f"ailurus-replica-{self.node_id}",
                    timeout_s=settings.request_timeout_s,
                    # KIP-74: a first batch may exceed max_bytes; only nonsense sizes
                    # are refused.
                    max_frame_bytes=max(settings.max_bytes * 2, 256 * 1024 * 1024),
                )
            except LeaderConnectionError as exc:
                error: LeaderConnectionError = exc
            else:
                try:
                    await self._session(conn)
                    continue
                except LeaderConnectionError as exc:
                    error = exc
                finally:
                    await conn.aclose()
            if self.connect_failures == 0:
                backoff = settings.backoff_initial_s
            self.connect_failures += 1
            log.warning(
                "replica_fetch_error",
                leader=self.leader_id,
                address=f"{self.host}:{self.port}",
                error=str(error),
                failures=self.connect_failures,
                retry_in_s=backoff,
            )
            limit = settings.max_connect_failures
            if limit is not None and self.connect_failures >= limit:
                for part in list(self._parts.values()):
                    part.last_error = ErrorCode.NETWORK_EXCEPTION
                    self._stop(part, ErrorCode.NETWORK_EXCEPTION)
                return
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, settings.backoff_max_s)

    async def _session(self, conn: LeaderConnection) -> None:
        """Fetch over one connection until it fails or no partition is left."""
        version = conn.version(FETCH_KEY)
        if version is None or version < MIN_FETCH_VERSION:
            raise LeaderConnectionError(
                f"{conn.address} serves Fetch only up to v{version}; "
                f"a follower needs v{MIN_FETCH_VERSION}+"
            )
        log.info(
            "replica_fetch_started",
            leader=self.leader_id,
            address=conn.address,
            partitions=len(self._parts),
            fetch_version=version,
        )
        while self._parts:
            now = time.monotonic()
            truncating = [
                p
                for p in self._parts.values()
                if p.needs_truncation and p.retry_at <= now
            ]
            if truncating:
                await self._truncate_by_epochs(conn, truncating)
            now = time.monotonic()
            ready = [
                p
                for p in self._parts.values()
                if not p.needs_truncation and p.retry_at <= now
            ]
            if not ready:
                waits = [p.retry_at - now for p in self._parts.values()]
                await anyio.sleep(
                    max(min(waits, default=0.0), self.settings.backoff_initial_s)
                )
                continue
            await self._fetch_once(conn, version, ready)

    # -- Fetch -------------------------------------------------------------------------
    async def _fetch_once(
        self, conn: LeaderConnection, version: int, parts: list[PartitionProgress]
    ) -> None:
        """Fetch ``parts`` and append the answers; while every partition is far
        behind, each next Fetch goes out before the last answer is appended."""
        for part in parts:
            await self._sync.before_fetch(
                part.log, part.fetch_offset, part.leader_high_watermark
            )
        by_id = version >= 13 and all(p.topic_id != ZERO_UUID for p in parts)
        if not by_id:
            version = MIN_FETCH_VERSION  # topic names: v12 is the last to carry them
        request, sent = self._fetch_request(parts, by_id=by_id)
        self.last_fetch_version = version
        conn.send(request, version=version)
        timeout_s = self.settings.max_wait_ms / 1000 + self.settings.request_timeout_s
        while True:
            response = await conn.receive(FetchResponse, timeout_s=timeout_s)
            self.connect_failures = 0
            if response.error_code:
                code = _error_code(response.error_code)
                log.warning(
                    "replica_fetch_error",
                    leader=self.leader_id,
                    error=code.name,
                    scope="fetch",
                )
                for part in parts:
                    self._delay(part, code)
                return
            answers = current_answers(response, sent, self._parts, by_id=by_id)
            offsets = ahead(parts, answers)
            if offsets is not None:
                for part, data in answers:  # what the next Fetch is reported against
                    part.leader_high_watermark = data.high_watermark
                request, following = self._fetch_request(parts, by_id=by_id, at=offsets)
                conn.send(request, version=version)
            for part, data in answers:
                await self._on_partition(part, data)
            if offsets is None:
                return
            sent = following

    def _fetch_request(
        self,
        parts: list[PartitionProgress],
        *,
        by_id: bool,
        at: dict[TopicPartition, int] | None = None,
    ) -> tuple[FetchRequest, dict[tuple[str | bytes, int], Sent]]:
        """The Fetch for ``parts`` (:func:`fetch_request`)."""
        return fetch_request(self.node_id, self.settings, parts, by_id=by_id, at=at)

    async def _on_partition(self, part: PartitionProgress, data: PartitionData) -> None:
        code = _error_code(data.error_code)
        part.last_error = code
        if code in STOPPING_ERRORS:
            log.info(
                "replica_fetch_error",
                topic=part.tp.topic,
                partition=part.tp.partition,
                leader=self.leader_id,
                error=code.name,
                leader_epoch=part.leader_epoch,
                action="stopped",
            )
            self._stop(part, code)
            return
        if code == ErrorCode.OFFSET_OUT_OF_RANGE:
            await self._out_of_range(part, data)
            return
        if code != ErrorCode.NONE:
            self._delay(part, code)
            return
        part.leader_high_watermark = data.high_watermark
        part.leader_log_start = data.log_start_offset
        diverging = data.diverging_epoch
        if diverging.epoch >= 0 or diverging.end_offset >= 0:
            target = truncation_offset(part.log, diverging.epoch, diverging.end_offset)
            if target is None and data.high_watermark >= 0:
                target = data.high_watermark  # Kafka's fallback: the high watermark
            if target is not None and target < part.log.log_end_offset:
                await self._truncate(part, target, "diverging_epoch")
            else:  # nothing to cut: do not spin on the same answer
                self._delay(part, ErrorCode.NONE, "diverging epoch, nothing to cut")
            return
        records = whole_batches(data.records)
        if records:
            try:
                end, fresh, idempotent = await anyio.to_thread.run_sync(
                    append_replicated, part.log, records
                )
                if self._producers is not None:
                    self._producers.replicated(part.log, idempotent, fresh=fresh)
                part.fetch_offset = end
                await self._sync.appended(
                    part.log, end, len(records), data.high_watermark
                )
            except (OffsetMismatch, InvalidBatch) as exc:
                # The local log and the leader disagree, or a batch came damaged:
                # check the epochs again, then fetch again.
                part.needs_truncation = self._check_epochs(part.log)
                self._delay(part, ErrorCode.CORRUPT_MESSAGE, str(exc))
                return
            except StorageError as exc:
                self._storage_failed(part, exc)
                return
        caught = part.fetch_offset >= part.leader_high_watermark
        if caught and not part.caught_up:
            log.info(
                "replica_caught_up",
                topic=part.tp.topic,
                partition=part.tp.partition,
                leader=self.leader_id,
                offset=part.fetch_offset,
                high_watermark=part.leader_high_watermark,
            )
        part.caught_up = caught

    async def _out_of_range(self, part: PartitionProgress, data: PartitionData) -> None:
        """OFFSET_OUT_OF_RANGE: behind the leader's log start → restart the local log
        there (Kafka ``truncateFullyAndStartAt``); past its end → truncate."""
        part.leader_high_watermark = data.high_watermark
        part.leader_log_start = data.log_start_offset
        start = data.log_start_offset
        if start >= 0 and part.fetch_offset < start:
            plog = part.log
            before = plog.log_end_offset

            def restart() -> None:
                plog.truncate_to(0)
                plog.reset_start(start)

            try:
                await anyio.to_thread.run_sync(restart)
            except StorageError as exc:
                self._delay(part, ErrorCode.KAFKA_STORAGE_ERROR, str(exc))
                return
            if self._producers is not None:
                await self._producers.reload(plog)  # an empty log: no producers
            part.fetch_offset = plog.log_end_offset
            log.info(
                "replica_truncated",
                topic=part.tp.topic,
                partition=part.tp.partition,
                from_offset=before,
                to_offset=part.fetch_offset,
                reason="leader_log_start",
            )
        elif part.log.leader_epoch >= 0:
            part.needs_truncation = True  # OffsetForLeaderEpoch, whatever the setting
        elif 0 <= data.high_watermark < part.fetch_offset:
            await self._truncate(part, data.high_watermark, "offset_out_of_range")
        else:
            self._delay(part, ErrorCode.OFFSET_OUT_OF_RANGE)

    # -- truncation ------------------------------------------------------------------
    async def _truncate_by_epochs(
        self, conn: LeaderConnection, parts: list[PartitionProgress]
    ) -> None:
        """OffsetForLeaderEpoch for ``parts`` until each log ends where the leader's
        history agrees with it (bounded rounds; Fetch's diverging_epoch takes over)."""
        version = conn.version(OFFSET_FOR_LEADER_EPOCH_KEY)
        if version is None or version < 2:
            for part in parts:
                part.needs_truncation = False  # diverging_epoch will do it
            return
        pending = parts
        for _ in range(_MAX_TRUNCATION_ROUNDS):
            for part in pending:
                if part.log.leader_epoch < 0:
                    part.needs_truncation = False  # nothing to check: fetch
            pending = [
                p for p in pending if self._parts.get(p.tp) is p and p.needs_truncation
            ]
            if not pending:
                break
            by_topic: dict[str, list[OffsetForLeaderPartition]] = {}
            for part in pending:
                by_topic.setdefault(part.tp.topic, []).append(
                    OffsetForLeaderPartition(
                        partition=part.tp.partition,
                        current_leader_epoch=part.leader_epoch,
                        leader_epoch=part.log.leader_epoch,
                    )
                )
            response = await conn.request(
                OffsetForLeaderEpochRequest(
                    replica_id=self.node_id,
                    topics=tuple(
                        OffsetForLeaderTopic(topic=t, partitions=tuple(ps))
                        for t, ps in by_topic.items()
                    ),
                ),
                OffsetForLeaderEpochResponse,
                version=version,
            )
            answers = {
                (t.topic, p.partition): p for t in response.topics for p in t.partitions
            }
            again = []
            for part in pending:
                answer = answers.get((part.tp.topic, part.tp.partition))
                if answer is None:  # not answered: fetching will tell
                    part.needs_truncation = False
                    continue
                code = _error_code(answer.error_code)
                if code in STOPPING_ERRORS:
                    part.last_error = code
                    self._stop(part, code)
                    continue
                if code != ErrorCode.NONE:
                    self._delay(part, code)
                    continue
                asked = part.log.leader_epoch
                target = truncation_offset(
                    part.log, answer.leader_epoch, answer.end_offset
                )
                part.needs_truncation = False
                if target is not None:
                    await self._truncate(part, target, "offset_for_leader_epoch")
                    # Our epoch was older than the leader's answer: check the
                    # epoch before it too (truncation not complete).
                    if answer.leader_epoch != asked and part.log.leader_epoch >= 0:
                        part.needs_truncation = True
                        again.append(part)
            pending = again
        for part in pending:
            part.needs_truncation = False

    async def _truncate(
        self, part: PartitionProgress, target: int, reason: str
    ) -> None:
        plog = part.log
        before = plog.log_end_offset
        if target >= before:
            part.fetch_offset = before
            return
        try:
            after = await anyio.to_thread.run_sync(plog.truncate_to, target)
        except StorageError as exc:
            self._storage_failed(part, exc)
            return
        self._sync.forget(plog)
        if self._producers is not None:
            # the batches cut may have been a producer's last ones (Kafka reloads
            # its ProducerStateManager after a truncation too)
            await self._producers.reload(plog)
        part.fetch_offset = after
        part.caught_up = False
        log.info(
            "replica_truncated",
            topic=part.tp.topic,
            partition=part.tp.partition,
            from_offset=before,
            to_offset=after,
            reason=reason,
            leader_epoch=part.leader_epoch,
        )

    def _storage_failed(self, part: PartitionProgress, exc: StorageError) -> None:
        """The local log could not be written: stop following the partition."""
        part.last_error = ErrorCode.KAFKA_STORAGE_ERROR
        log.error(
            "replica_fetch_error",
            topic=part.tp.topic,
            partition=part.tp.partition,
            error=ErrorCode.KAFKA_STORAGE_ERROR.name,
            reason=str(exc),
            action="stopped",
        )
        self._stop(part, ErrorCode.KAFKA_STORAGE_ERROR)

    def _delay(
        self, part: PartitionProgress, code: ErrorCode, reason: str = ""
    ) -> None:
        part.last_error = code
        part.retry_at = time.monotonic() + self.settings.backoff_initial_s
        log.warning(
            "replica_fetch_error",
            topic=part.tp.topic,
            partition=part.tp.partition,
            leader=self.leader_id,
            error=code.name,
            reason=reason,
            action="retry",
        )


def _error_code(value: int) -> ErrorCode:
    """A leader's error code; one this broker does not list is a server error."""
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR
