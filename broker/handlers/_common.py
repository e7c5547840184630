"""Helpers shared by handlers: storage-error mapping, topic lookup and auto-creation,
and answering for one partition of a topic."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import structlog

from protocol.error_codes import ErrorCode
from storage.errors import (
    InvalidBatch,
    InvalidConfig,
    InvalidTopicName,
    LogClosed,
    MessageTooLarge,
    OffsetOutOfRange,
    StorageError,
    StorageIOError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

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


def create_topic(
    ctx: BrokerContext,
    name: str,
    partitions: int,
    configs: Mapping[str, str] | None = None,
    *,
    reason: str,
) -> TopicMeta:
    """Create a topic and log the change (raises StorageError subclasses)."""
    meta = ctx.logs.create_topic(name, partitions, dict(configs or {}))
    log.info(
        "topic_created",
        topic=name,
        topic_id=str(meta.topic_uuid),
        partitions=partitions,
        configs=dict(configs or {}),
        reason=reason,
    )
    return meta


def auto_create(ctx: BrokerContext, name: str) -> TopicMeta | ErrorCode:
    """Create a missing topic with the broker defaults (auto.create.topics.enable)."""
    try:
        return create_topic(ctx, name, ctx.config.default_partitions, reason="auto")
    except TopicExists:
        meta = find_topic(ctx, name)
        return meta if meta is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    except StorageError as e:
        return error_code(e)


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
