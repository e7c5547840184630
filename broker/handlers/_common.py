"""Helpers shared by handlers: storage-error mapping, topic lookup, topic creation
(in a worker thread, within the partition caps), and answering for one partition of
a topic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import anyio
import structlog

from protocol.error_codes import ErrorCode
from storage.errors import (
    InvalidBatch,
    InvalidConfig,
    InvalidTopicName,
    LogClosed,
    MessageTooLarge,
    OffsetOutOfRange,
    PartitionLimit,
    StorageError,
    StorageIOError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from broker.context import BrokerContext
    from storage.log_manager import TopicMeta
    from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.topics")

ZERO_UUID = b"\x00" * 16

R = TypeVar("R")

_CODES: dict[type[StorageError], ErrorCode] = {
    InvalidBatch: ErrorCode.CORRUPT_MESSAGE,
    MessageTooLarge: ErrorCode.MESSAGE_TOO_LARGE,
    OffsetOutOfRange: ErrorCode.OFFSET_OUT_OF_RANGE,
    UnknownTopic: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    UnknownPartition: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    TopicExists: ErrorCode.TOPIC_ALREADY_EXISTS,
    InvalidTopicName: ErrorCode.INVALID_TOPIC_EXCEPTION,
    InvalidConfig: ErrorCode.INVALID_CONFIG,
    PartitionLimit: ErrorCode.POLICY_VIOLATION,
    StorageIOError: ErrorCode.KAFKA_STORAGE_ERROR,
    LogClosed: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,  # deleted while in use
}


def error_code(exc: StorageError) -> ErrorCode:
    """The Kafka error code for a storage error."""
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return ErrorCode.KAFKA_STORAGE_ERROR


def find_topic(ctx: BrokerContext, name: str) -> TopicMeta | None:
    try:
        return ctx.logs.topic(name)
    except UnknownTopic:
        return None


def find_topic_by_id(ctx: BrokerContext, raw_id: bytes) -> TopicMeta | None:
    if raw_id == ZERO_UUID:
        return None
    try:
        return ctx.logs.topic_by_id(bytes(raw_id))
    except UnknownTopic:
        return None


@dataclass(frozen=True, slots=True)
class NewTopic:
    """One topic to create: name, partition count and config overrides."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


async def create_in_thread(
    ctx: BrokerContext, wanted: Sequence[NewTopic], *, reason: str
) -> list[TopicMeta | StorageError]:
    """Create topics in a worker thread (directories, segment files, checkpoints
    and fsyncs stay off the event loop); each one's TopicMeta or StorageError, in
    order. Successes are logged as ``topic_created``."""
    logs = ctx.logs

    def work() -> list[TopicMeta | StorageError]:
        out: list[TopicMeta | StorageError] = []
        for t in wanted:
            try:
                out.append(logs.create_topic(t.name, t.partitions, dict(t.configs)))
            except StorageError as e:
                out.append(e)
        return out

    results = await anyio.to_thread.run_sync(work)
    for t, result in zip(wanted, results, strict=True):
        if isinstance(result, TopicExists):
            continue  # created meanwhile by another request
        if isinstance(result, StorageError):
            log.warning(
                "topic_create_failed", topic=t.name, reason=reason, error=str(result)
            )
            continue
        log.info(
            "topic_created",
            topic=t.name,
            topic_id=str(result.topic_uuid),
            partitions=t.partitions,
            configs=dict(t.configs),
            reason=reason,
        )
    return results


def partition_room(ctx: BrokerContext, adding: int) -> str | None:
    """Why ``adding`` more partitions would exceed the broker's partition cap, or
    None (storage checks again when it creates them)."""
    cap = ctx.logs.max_partitions
    held = ctx.logs.partition_total()
    if cap is not None and held + adding > cap:
        return (
            f"{adding} more partitions would exceed the broker's limit of {cap} "
            f"(ailurus.max.partitions; {held} exist)"
        )
    return None


def request_room(ctx: BrokerContext, requested: int, adding: int) -> str | None:
    """Why a request adding ``adding`` partitions after ``requested`` would exceed
    the per-request cap, or None."""
    cap = ctx.config.max_partitions_per_request
    if requested + adding > cap:
        return (
            f"the request would add {requested + adding} partitions; at most {cap} "
            f"per request (ailurus.max.partitions.per.request)"
        )
    return None


def leader_epoch(plog: PartitionLog) -> int:
    """The partition's current leader epoch as this broker reports and stamps it.

    A single node never changes leader, so the epoch only moves when a restored
    snapshot brings batches of a later term (issue 7: the epoch becomes at least the
    snapshot's ``last_term``). Metadata, Produce, Fetch, ListOffsets and
    OffsetForLeaderEpoch all use this one value, so a client that learnt the epoch
    from Metadata is never told it is fenced or unknown.
    """
    return max(plog.leader_epoch, 0)


def answer_partition(
    ctx: BrokerContext,
    api: str,
    meta: TopicMeta | None,
    index: int,
    answer: Callable[[TopicMeta, PartitionLog], R | ErrorCode],
    fail: Callable[[ErrorCode], R],
) -> R:
    """One partition's entry in a per-partition response.

    ``answer`` gets the topic and the partition's log and returns the entry, or an
    error code.
    Every error (no such topic, a storage error, or a code ``answer`` returns) is
    counted in the ``api``'s error metric and answered by ``fail(code)``.
    """
    if meta is None:
        code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    else:
        try:
            result = answer(meta, ctx.logs.partition(meta.name, index))
        except StorageError as e:
            code = error_code(e)
        else:
            if not isinstance(result, ErrorCode):
                return result
            code = result
    ctx.metrics.error(api, code.name)
    return fail(code)
