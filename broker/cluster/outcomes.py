"""Per-partition requests to the controller as the Kafka handlers answer them
(ElectLeaders, AlterPartitionReassignments): each partition's outcome is a Kafka
error code and message, the requests go out a bounded number at a time, and the
answer lists the outcomes grouped by topic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import anyio

from broker.cluster.model import RequestError
from broker.metrics import Metrics
from protocol.error_codes import ErrorCode

CONCURRENT_REQUESTS = 16  # requests in flight to the controller at once

Outcome = tuple[ErrorCode, str | None]
Outcomes = dict[tuple[str, int], Outcome]
T = TypeVar("T")


def outcome(error: RequestError | None) -> Outcome:
    """The code and message a controller's answer gives one partition."""
    if error is None:
        return (ErrorCode.NONE, None)
    try:
        code = ErrorCode(error.code)
    except ValueError:
        code = ErrorCode.UNKNOWN_SERVER_ERROR
    return (code, error.message)


async def ask_each(
    items: Iterable[tuple[str, int, T]],
    ask: Callable[[str, int, T], Awaitable[RequestError | None]],
    outcomes: Outcomes,
) -> None:
    """Ask the controller about each (topic, index, argument), at most
    CONCURRENT_REQUESTS at once, and record each partition's outcome."""
    limiter = anyio.CapacityLimiter(CONCURRENT_REQUESTS)

    async def one(topic: str, index: int, arg: T) -> None:
        async with limiter:
            error = await ask(topic, index, arg)
        outcomes[(topic, index)] = outcome(error)

    async with anyio.create_task_group() as tg:
        for topic, index, arg in items:
            tg.start_soon(one, topic, index, arg)


def by_topic(
    outcomes: Outcomes, metrics: Metrics, api: str
) -> dict[str, list[tuple[int, ErrorCode, str | None]]]:
    """The outcomes grouped by topic (index, code, message), in their order; each
    error is counted in the API's error metric."""
    grouped: dict[str, list[tuple[int, ErrorCode, str | None]]] = {}
    for (topic, index), (code, message) in outcomes.items():
        if code:
            metrics.error(api, code.name)
        grouped.setdefault(topic, []).append((index, code, message))
    return grouped
