"""kafka-python group consumers that join with the topics' partitions already known.

kafka-python 3.0 loses a group join in one case: its first JoinGroup goes out before
its first metadata answer arrives (the broker's initial rebalance delay is 0, as in a
dev broker), so as group leader it assigns nothing and at once rejoins; if ``poll``'s
timeout ends while that second join is in flight, the member's own assignment makes
its metadata snapshots equal again, ``need_rejoin()`` turns false, and the finished
join is never completed: the consumer stays subscribed with no partitions for ever.
A consumer that knows the partitions before it subscribes assigns them on its first
join and never takes that path, against any broker.

It also loses its producer's sender thread when a broker leaves the cluster while a
batch for it is ready: the sender asks ``maybe_connect`` for a node that the
network thread's metadata update has just removed, ``UnknownBrokerIdError`` escapes
(only ``NodeNotReadyError`` is caught) and the producer hangs. :func:`survive_departed_broker`
makes that lookup answer "not ready", as it does for every other missing connection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import kafka.errors
import kafka.net.compat
from kafka import KafkaConsumer


def subscribe_known(
    consumer: KafkaConsumer,
    topics: Sequence[str],
    *,
    listener: Any = None,
    timeout_s: float = 20.0,
) -> None:
    """Subscribe ``consumer`` once its metadata lists every partition of ``topics``."""
    deadline = time.monotonic() + timeout_s
    while True:
        known = [consumer.partitions_for_topic(t) for t in topics]
        if all(known):
            break
        if time.monotonic() >= deadline:
            missing = [t for t, p in zip(topics, known, strict=True) if not p]
            raise TimeoutError(f"no partitions known for {missing}")
        time.sleep(0.05)
    if listener is None:
        consumer.subscribe(list(topics))
    else:
        consumer.subscribe(list(topics), listener=listener)


def group_consumer(topics: str | Sequence[str], **config: Any) -> KafkaConsumer:
    """A KafkaConsumer in a group, subscribed to ``topics`` as ``subscribe_known`` does."""
    consumer = KafkaConsumer(**config)
    try:
        subscribe_known(consumer, [topics] if isinstance(topics, str) else topics)
    except BaseException:
        consumer.close()
        raise
    return consumer


def survive_departed_broker() -> None:
    """Treat a connection lookup for a broker gone from the metadata as "not ready"
    (the kafka-python 3.0 sender thread dies on it otherwise). Idempotent."""
    net = kafka.net.compat.KafkaNetClient
    if getattr(net, "_ailurus_patched", False):
        return
    maybe_connect = net.maybe_connect

    def patched(self: Any, node_id: Any, **kwargs: Any) -> Any:
        try:
            return maybe_connect(self, node_id, **kwargs)
        except kafka.errors.UnknownBrokerIdError:
            return None

    net.maybe_connect = patched  # type: ignore[method-assign]
    net._ailurus_patched = True  # type: ignore[attr-defined]
