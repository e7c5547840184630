"""The exceptions the storage layer raises: every one is a :class:`StorageError`.

The broker maps them to Kafka error codes (storage knows no error codes):

    InvalidBatch     -> CORRUPT_MESSAGE
    InvalidRecord    -> INVALID_RECORD (a rule of Kafka's LogValidator; per-record
                        errors in ``record_errors``)
    InvalidTimestamp -> INVALID_TIMESTAMP
    MessageTooLarge  -> MESSAGE_TOO_LARGE
    OffsetOutOfRange -> OFFSET_OUT_OF_RANGE
    UnknownTopic / UnknownPartition -> UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID
    TopicExists      -> TOPIC_ALREADY_EXISTS
    InvalidTopicName -> INVALID_TOPIC_EXCEPTION
    InvalidConfig    -> INVALID_CONFIG
    PartitionLimit   -> POLICY_VIOLATION (the broker's partition cap would be exceeded)
    StorageIOError   -> KAFKA_STORAGE_ERROR (disk full, EIO, failed fsync)
    OffsetMismatch   -> (snapshot ingest) a verbatim append that does not continue the log
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the storage layer raises."""


class CorruptSegment(StorageError):
    """A segment or index file on disk is damaged beyond what recovery repairs."""


class OffsetOutOfRange(StorageError):
    """A read asked for an offset below the log start or above the log end."""

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int) -> None:
        super().__init__(
            f"offset {offset} outside [{log_start_offset}, {log_end_offset}]"
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class UnknownTopic(StorageError):
    """No topic of that name or id exists."""


class UnknownPartition(StorageError):
    """The topic exists but has no partition of that index."""


class TopicExists(StorageError):
    """create_topic was asked for a name (or id) already in use."""


class InvalidTopicName(StorageError):
    """A topic name Kafka would refuse (empty, '.', '..', > 249 chars, bad chars)."""


class InvalidConfig(StorageError):
    """A topic config key is unknown or its value is out of range."""


class PartitionLimit(StorageError):
    """Creating the partitions would exceed the log manager's partition cap."""


class InvalidBatch(StorageError):
    """A produced batch failed validation (CRC, magic, lengths, counts); nothing was written."""


class InvalidRecord(StorageError):
    """A produced batch breaks a rule of Kafka's ``LogValidator`` (a control batch,
    an inconsistent record count, a record without a key on a compacted topic...);
    nothing was written. ``record_errors`` holds (index of the record in its batch,
    message) for each offending record, empty when the batch as a whole is at
    fault."""

    def __init__(
        self, message: str, *, record_errors: list[tuple[int, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.record_errors: list[tuple[int, str]] = record_errors or []


class InvalidTimestamp(InvalidRecord):
    """A produced record's timestamp is out of the topic's bounds, or the producer
    set LogAppendTime itself."""


class MessageTooLarge(StorageError):
    """A batch is larger than the topic's max.message.bytes."""


class OffsetMismatch(StorageError):
    """A verbatim append does not start at the log end offset or is not dense."""


class DataDirLocked(StorageError):
    """Another process holds the data directory's lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        holder = "unknown pid" if pid is None else f"pid {pid}"
        super().__init__(f"data dir {path} is locked by {holder}")
        self.path = path
        self.pid = pid


class StorageIOError(StorageError):
    """The OS failed a write, fsync or file operation (ENOSPC, EIO, ...).

    After a failed fsync the partition is marked failed: nothing more is acknowledged
    as durable until it is reopened (and recovered).
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class LogClosed(StorageError):
    """The partition log was closed (or deleted) while a caller still used it."""


class ProducerFenced(StorageError):
    """A transaction marker carries an epoch older than its producer's current one
    (Kafka ``InvalidProducerEpochException``)."""


class CoordinatorFenced(StorageError):
    """A transaction marker comes from an older transaction coordinator than the
    producer's last marker (Kafka ``TransactionCoordinatorFencedException``)."""
