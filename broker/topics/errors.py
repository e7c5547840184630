"""The Kafka error code of each storage error, and of a cluster's refusal."""

from __future__ import annotations

from protocol.error_codes import ErrorCode
from storage.errors import (
    CoordinatorFenced,
    InvalidBatch,
    InvalidConfig,
    InvalidRecord,
    InvalidTimestamp,
    InvalidTopicName,
    LogClosed,
    MessageTooLarge,
    OffsetOutOfRange,
    PartitionLimit,
    ProducerFenced,
    StorageError,
    StorageIOError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
)


class Refused(StorageError):
    """The cluster refused a topic change (the controller's Kafka error code), or it
    was not seen in time (REQUEST_TIMED_OUT). A StorageError so that every handler
    answers it like a local failure, through :func:`error_code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_CODES: dict[type[StorageError], ErrorCode] = {
    InvalidBatch: ErrorCode.CORRUPT_MESSAGE,
    InvalidRecord: ErrorCode.INVALID_RECORD,
    InvalidTimestamp: ErrorCode.INVALID_TIMESTAMP,
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
    ProducerFenced: ErrorCode.INVALID_PRODUCER_EPOCH,
    CoordinatorFenced: ErrorCode.TRANSACTION_COORDINATOR_FENCED,
}


def error_code(exc: StorageError) -> ErrorCode:
    """The Kafka error code for a storage error."""
    if isinstance(exc, Refused):
        try:
            return ErrorCode(exc.code)
        except ValueError:
            return ErrorCode.UNKNOWN_SERVER_ERROR
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return ErrorCode.KAFKA_STORAGE_ERROR
