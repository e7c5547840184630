"""The Kafka error code of each storage error."""

from __future__ import annotations

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
