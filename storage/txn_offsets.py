"""Transactional offset commits waiting for their transaction to end (KIP-98).

:class:`TxnOffsets` is the pure bookkeeping of Kafka's
``GroupMetadata.pendingTransactionalOffsetCommits``, shared by the single-node offset
store (:mod:`storage.offset_store`, where a record's position is its line's order)
and cluster mode's ``__consumer_offsets`` (``broker.groups.replicated``, where it is
the record's log offset). The rules:

* A TxnOffsetCommit of producer P with epoch E adds P's pending offsets, per group
  and partition; a later one of P for the same partition replaces the earlier one.
  Pending offsets are invisible to OffsetFetch (which answers the last committed
  value, or UNSTABLE_OFFSET_COMMIT when it asks for stable offsets, KIP-447).
* Fencing: E older than P's known epoch (that of its pending offsets, or of its
  last completed transaction) is refused, as the producer state of Kafka's offsets
  partition refuses the batch (INVALID_PRODUCER_EPOCH). A newer E first drops P's
  pending offsets of the older epoch: that transaction is over (the transaction
  coordinator aborts it before it hands out the new epoch).
* Completion (the COMMIT or ABORT marker of P's transaction, for some groups) takes
  P's pending offsets of those groups away; on COMMIT each one becomes the committed
  offset *unless the committed one was written later*: the record written last wins
  when plain and transactional commits of a partition mix (Kafka's
  ``completePendingTxnOffsetCommit`` / ``OffsetMetadataManager
  .replayEndTransactionMarker``), so a transactional commit replaces a plain commit
  made before it, and a plain commit made while it was pending stays. A completion
  with an epoch older than P's pending offsets is stale and changes nothing.
* Deleting a group's offsets (OffsetDelete, DeleteGroups, a deleted topic) drops
  its pending ones too (Kafka's ``GroupMetadata.removeOffsets``).

The values kept are the caller's (``V``); this module knows only positions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Pending", "TxnOffsets", "later"]

V = TypeVar("V")
Key = tuple[str, int]  # topic, partition


@dataclass(frozen=True, slots=True)
class Pending(Generic[V]):
    """A pending offset: where its record is (a later position wins) and its value."""

    at: int
    value: V


def later(pending_at: int, committed_at: int | None) -> bool:
    """Whether a completed transactional offset at ``pending_at`` replaces the
    committed offset written at ``committed_at`` (None: there is none)."""
    return committed_at is None or committed_at < pending_at


class _Producer(Generic[V]):
    __slots__ = ("epoch", "groups")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.groups: dict[str, dict[Key, Pending[V]]] = {}


class TxnOffsets(Generic[V]):
    """Pending transactional offsets by producer id, and producers' known epochs."""

    __slots__ = ("_by_group", "_epochs", "_producers")

    def __init__(self) -> None:
        self._producers: dict[int, _Producer[V]] = {}
        self._epochs: dict[int, int] = {}  # producer id -> epoch of its last end
        self._by_group: dict[str, set[int]] = {}  # group -> producers pending in it

    # -- producers ---------------------------------------------------------------
    def known_epoch(self, producer_id: int) -> int:
        """The newest epoch seen of ``producer_id`` (-1: none)."""
        p = self._producers.get(producer_id)
        return max(-1 if p is None else p.epoch, self._epochs.get(producer_id, -1))

    def pending_epoch(self, producer_id: int) -> int:
        """The epoch of the producer's pending offsets (-1: it has none)."""
        p = self._producers.get(producer_id)
        return -1 if p is None else p.epoch

    def fenced(self, producer_id: int, producer_epoch: int) -> bool:
        """Whether ``producer_epoch`` is older than the producer's known epoch."""
        return producer_epoch < self.known_epoch(producer_id)

    def note_epoch(self, producer_id: int, producer_epoch: int) -> None:
        """Remember that ``producer_id`` reached ``producer_epoch`` (a completed
        transaction, or a store's record of one)."""
        if producer_epoch > self._epochs.get(producer_id, -1):
            self._epochs[producer_id] = producer_epoch

    def epochs(self) -> dict[int, int]:
        """Producer id -> epoch of its last completed transaction."""
        return dict(self._epochs)

    # -- pending offsets ---------------------------------------------------------
    def add(
        self,
        producer_id: int,
        producer_epoch: int,
        group: str,
        key: Key,
        at: int,
        value: V,
    ) -> None:
        """A transactional offset record of the producer, at position ``at``.

        The caller checks :meth:`fenced` first; a newer epoch drops the producer's
        pending offsets of its older one.
        """
        p = self._producers.get(producer_id)
        if p is not None and p.epoch < producer_epoch:
            self._drop_producer(producer_id)
            p = None
        if p is None:
            p = self._producers[producer_id] = _Producer(producer_epoch)
        p.groups.setdefault(group, {})[key] = Pending(at, value)
        self._by_group.setdefault(group, set()).add(producer_id)

    def remove(self, producer_id: int, group: str, key: Key) -> None:
        """A transactional tombstone of the producer: its pending offset goes."""
        p = self._producers.get(producer_id)
        table = None if p is None else p.groups.get(group)
        if p is None or table is None:
            return
        table.pop(key, None)
        if not table:
            del p.groups[group]
            self._unindex(group, producer_id)
        if not p.groups:
            self._forget_producer(producer_id)

    def complete(
        self,
        producer_id: int,
        producer_epoch: int,
        groups: Collection[str] | None,
        commit: bool,
    ) -> list[tuple[str, Key, Pending[V]]] | None:
        """The producer's transaction ended for ``groups`` (None: every group).

        Returns the offsets to make committed (each only if :func:`later` than the
        committed one), [] on ABORT, or None when the completion is stale (its
        epoch is older than the pending offsets'): then nothing changes.
        """
        p = self._producers.get(producer_id)
        if p is not None and producer_epoch < p.epoch:
            return None
        self.note_epoch(producer_id, producer_epoch)
        if p is None:
            return []
        names = (
            list(p.groups) if groups is None else [g for g in groups if g in p.groups]
        )
        out: list[tuple[str, Key, Pending[V]]] = []
        for group in names:
            table = p.groups.pop(group)
            self._unindex(group, producer_id)
            if commit:
                out.extend((group, key, pending) for key, pending in table.items())
        if not p.groups:
            del self._producers[producer_id]
        return out

    def drop(self, group: str, keys: Collection[Key] | None = None) -> int:
        """Drop the group's pending offsets (of ``keys`` only, when given); how many."""
        dropped = 0
        for producer_id in list(self._by_group.get(group, ())):
            p = self._producers[producer_id]
            table = p.groups[group]
            gone = list(table) if keys is None else [k for k in keys if k in table]
            for key in gone:
                del table[key]
            dropped += len(gone)
            if not table:
                del p.groups[group]
                self._unindex(group, producer_id)
            if not p.groups:
                self._forget_producer(producer_id)
        return dropped

    def drop_topic(self, topic: str) -> int:
        """Drop every group's pending offsets of a deleted topic; how many."""
        dropped = 0
        for group in list(self._by_group):
            keys = {k for k in self.pending_keys(group) if k[0] == topic}
            if keys:
                dropped += self.drop(group, keys)
        return dropped

    # -- reads ---------------------------------------------------------------------
    def pending_keys(self, group: str) -> set[Key]:
        """The partitions of ``group`` with a pending offset (any producer)."""
        out: set[Key] = set()
        for producer_id in self._by_group.get(group, ()):
            out.update(self._producers[producer_id].groups[group])
        return out

    def groups(self) -> set[str]:
        """The groups with pending offsets."""
        return set(self._by_group)

    def producer_groups(self, producer_id: int) -> set[str]:
        """The groups where ``producer_id`` has pending offsets."""
        p = self._producers.get(producer_id)
        return set() if p is None else set(p.groups)

    def items(self) -> Iterator[tuple[int, int, str, Key, Pending[V]]]:
        """(producer id, epoch, group, partition, pending) of every pending offset."""
        for producer_id, p in self._producers.items():
            for group, table in p.groups.items():
                for key, pending in table.items():
                    yield producer_id, p.epoch, group, key, pending

    def __len__(self) -> int:
        return sum(len(t) for p in self._producers.values() for t in p.groups.values())

    # -- helpers -------------------------------------------------------------------
    def _drop_producer(self, producer_id: int) -> None:
        p = self._producers.pop(producer_id)
        for group in p.groups:
            self._unindex(group, producer_id)

    def _forget_producer(self, producer_id: int) -> None:
        """The producer has no pending offsets left; its epoch still fences."""
        p = self._producers.pop(producer_id)
        self.note_epoch(producer_id, p.epoch)

    def _unindex(self, group: str, producer_id: int) -> None:
        pids = self._by_group.get(group)
        if pids is not None:
            pids.discard(producer_id)
            if not pids:
                del self._by_group[group]
