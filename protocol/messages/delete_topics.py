"""DeleteTopics (key 20), v0–6.

Version notes: v1 adds the throttle time; v2 sends the response before throttling;
v3 may return TOPIC_DELETION_DISABLED; v4 flexible; v5 adds a per-topic error
message and may return THROTTLING_QUOTA_EXCEEDED (KIP-599); v6 names topics by
name or id (``topics`` replaces ``topic_names``) and returns topic ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    INT16,
    INT32,
    STRING,
    UUID,
    Array,
    Nullable,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicState:
    name: str | None = f(Nullable(STRING, "6+"), versions="6+")
    topic_id: bytes = f(UUID, versions="6+")


@message(api_key=20, kind="request", valid="0-6", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicsRequest:
    topics: tuple[DeleteTopicState, ...] = f(Array(DeleteTopicState), versions="6+")
    topic_names: tuple[str, ...] = f(Array(STRING), versions="0-5")
    timeout_ms: int = f(INT32)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeletableTopicResult:
    # Never null before v6: Kafka's default is "" (not null) here.
    name: str | None = f(Nullable(STRING, "6+"), default="")
    topic_id: bytes = f(UUID, versions="6+")
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "5+"), versions="5+")


@message(api_key=20, kind="response", valid="0-6", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicsResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    responses: tuple[DeletableTopicResult, ...] = f(Array(DeletableTopicResult))
