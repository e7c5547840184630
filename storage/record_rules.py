"""The per-record rules of Kafka's ``LogValidator`` for produced batches (KIP-467).

A produced batch is refused, with the index of each offending record in its batch
and a message per record, when:

- the topic is compacted (``cleanup.policy`` contains ``compact``) and a record has
  no key: INVALID_RECORD, "Compacted topic cannot accept message without key in
  topic partition <topic>-<partition>.";
- the topic's timestamp type is CreateTime and a record's timestamp (other than -1,
  "none") lies outside ``[now - message.timestamp.before.max.ms,
  now + message.timestamp.after.max.ms]``: INVALID_TIMESTAMP;
- the producer set the LogAppendTime attribute itself, and the record's timestamp
  was not accepted as a CreateTime one: INVALID_TIMESTAMP.

A batch with any INVALID_TIMESTAMP error is refused as a whole with
INVALID_TIMESTAMP, else with INVALID_RECORD (Kafka's ``processRecordErrors``);
nothing of the payload is written.

Cost: nothing for topics that need none of this (``TopicConfig.inspects_records``
is false and the LogAppendTime bit is clear: only the header was read). Timestamp
bounds are checked on the header first — ``base_timestamp`` (the first record's)
and ``max_timestamp`` — and the records are decoded only when one of them is out of
bounds; a record earlier than its batch's first record is therefore checked only
when the batch is decoded anyway (compacted topic, or the header already out of
bounds), since the header carries no minimum. Compacted topics decode every batch
(keys live in the records); compressed batches are decompressed for that, and only
each record's offset, timestamp and key length are read
(``protocol.record_builder.iter_record_keys``: keys and values are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from protocol.record_builder import iter_record_keys
from protocol.records import TIMESTAMP_TYPE_BIT, BatchHeader, CorruptBatch
from storage.config import TopicConfig
from storage.errors import InvalidBatch, InvalidRecord, InvalidTimestamp

Buffer = bytes | bytearray | memoryview

NO_TIMESTAMP: Final = -1


def timestamp_out_of_bounds(
    timestamp: int, now_ms: int, before_max_ms: int, after_max_ms: int
) -> bool:
    """Whether a CreateTime timestamp is refused (Kafka's
    ``recordHasInvalidTimestamp``): more than ``before_max_ms`` before now or more
    than ``after_max_ms`` after it. -1 (no timestamp) is never refused."""
    if timestamp == NO_TIMESTAMP:
        return False
    diff = now_ms - timestamp
    return diff > before_max_ms or -diff > after_max_ms


def header_may_be_out_of_bounds(
    header: BatchHeader, now_ms: int, before_max_ms: int, after_max_ms: int
) -> bool:
    """Whether the header leaves room for a record out of bounds: its first
    (``base_timestamp``) or largest (``max_timestamp``) timestamp is, by the rule
    of :func:`timestamp_out_of_bounds` (where -1 counts as out, so such a batch is
    decoded)."""
    first, last = header.base_timestamp, header.max_timestamp
    return (
        now_ms - first > before_max_ms
        or first - now_ms > after_max_ms
        or now_ms - last > before_max_ms
        or last - now_ms > after_max_ms
    )


def check_records(
    records: Buffer,
    batches: Sequence[tuple[int, BatchHeader]],
    config: TopicConfig,
    now_ms: int,
    topic_partition: str,
) -> None:
    """Apply the module's rules to each batch of a validated payload.

    Raises:
        InvalidRecord / InvalidTimestamp: a batch holds an offending record (the
            first such batch is reported, as Kafka stops there).
        InvalidBatch: a batch that had to be decoded has malformed records.
    """
    create_time = not config.log_append_time
    before, after = config.timestamp_before_max_ms, config.timestamp_after_max_ms
    for pos, header in batches:
        producer_lat = bool(header.attributes & TIMESTAMP_TYPE_BIT)
        if not (
            config.compacted
            or producer_lat
            or (
                create_time
                and header_may_be_out_of_bounds(header, now_ms, before, after)
            )
        ):
            continue
        _check_batch(
            records,
            pos,
            header,
            config,
            now_ms,
            topic_partition,
            producer_lat=producer_lat,
        )


def _check_batch(
    records: Buffer,
    pos: int,
    header: BatchHeader,
    config: TopicConfig,
    now_ms: int,
    topic_partition: str,
    *,
    producer_lat: bool,
) -> None:
    create_time = not config.log_append_time
    before, after = config.timestamp_before_max_ms, config.timestamp_after_max_ms
    errors: list[tuple[int, str]] = []
    bad_timestamp = False
    try:
        for index, (offset, timestamp, key_length) in enumerate(
            iter_record_keys(records, header, pos)
        ):
            if config.compacted and key_length < 0:
                errors.append(
                    (
                        index,
                        "Compacted topic cannot accept message without key in "
                        f"topic partition {topic_partition}.",
                    )
                )
            elif create_time and timestamp != NO_TIMESTAMP:
                if timestamp_out_of_bounds(timestamp, now_ms, before, after):
                    bad_timestamp = True
                    errors.append(
                        (
                            index,
                            f"Timestamp {timestamp} of message with offset "
                            f"{offset} is out of range. The timestamp should "
                            f"be within [{now_ms - before}, {now_ms + after}]",
                        )
                    )
            elif producer_lat:
                bad_timestamp = True
                errors.append(
                    (
                        index,
                        f"Invalid timestamp type in message with offset {offset} "
                        f"and timestamp {timestamp}. Producer should not set "
                        "timestamp type to LogAppendTime.",
                    )
                )
    except CorruptBatch as exc:
        raise InvalidBatch(str(exc)) from exc
    if not errors:
        return
    if bad_timestamp:
        raise InvalidTimestamp(
            "One or more records have been rejected due to invalid timestamp",
            record_errors=errors,
        )
    shown = ", ".join(
        f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3]
    )
    raise InvalidRecord(
        f"One or more records have been rejected due to {len(errors)} record errors "
        f"in total, and only showing the first three errors at most: [{shown}]",
        record_errors=errors,
    )
