"""The broker-wide budget for bytes held in partly received frames.

Kafka bounds the memory of requests read off the sockets with one broker-wide pool
(``queued.max.request.bytes``, ``SocketServer``'s ``MemoryPool``): when it is used up,
connections stop reading until memory frees. Ailurus applies the same idea to what a
connection holds for a frame it is still receiving (the assembly buffer of
:class:`protocol.framing.FrameReader`, which grows with the bytes that arrive): the
setting ``ailurus.partial.frames.max.bytes`` (``BrokerConfig.partial_frames_max_bytes``)
caps their sum. ``queued.max.request.bytes`` stays the per-connection cap on requests
received and not yet answered (``broker.net.connection``).

Over the budget, every connection assembling a *large* frame (one claiming more than
the smallest assembly buffer, ``protocol.framing.ASSEMBLY_INITIAL``) pauses reading,
except one: the assembler with the fewest bytes still
missing (found once, then kept up to date as members report; ties keep the one
already proceeding). So

- a frame larger than the whole budget still completes (it is eventually the one
  left reading), and nothing deadlocks: some assembler can always make progress;
- a peer that claims 100 MiB and trickles never stands in the way of a smaller
  legitimate frame, which has fewer bytes missing;
- connections not in the middle of a large frame never pause: small requests keep
  flowing.

Paused connections resume when the sum drops back under the budget, or when one of
them becomes the assembler allowed to proceed: a frame completing, a connection
closing (which gives back its whole share) or an error all release bytes. A peer that
stops sending mid-frame still holds its share until ``connections.max.idle.ms`` closes
it.

This module knows no event loop; members are told to resume through
:meth:`BudgetMember.budget_resumed`.
"""

from __future__ import annotations

from typing import Protocol


class BudgetMember(Protocol):
    """What the budget needs of a connection."""

    @property
    def frame_missing(self) -> int:
        """Bytes of the partly received frame not yet received."""
        ...

    def budget_resumed(self) -> None:
        """The member may read again (it was paused by :meth:`FrameBudget.update`)."""
        ...


class FrameBudget:
    """Bytes held in partly received frames, broker-wide, against one limit."""

    __slots__ = ("_held", "_large", "_lead", "_paused", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        # Insertion order is the order frames started in (the tie-break).
        self._held: dict[BudgetMember, int] = {}
        self._large: dict[BudgetMember, None] = {}
        self._paused: dict[BudgetMember, None] = {}
        self._lead: BudgetMember | None = None  # proceeds over the budget

    @property
    def holders(self) -> int:
        """Connections holding a partly received frame."""
        return len(self._held)

    @property
    def paused(self) -> int:
        """Connections paused by the budget."""
        return len(self._paused)

    def update(self, member: BudgetMember, held: int, *, large: bool) -> bool:
        """Record that ``member`` holds ``held`` bytes; whether it may keep reading.

        ``large``: the frame can still grow (only such assemblers are ever paused).
        A member told False must stop reading until :meth:`BudgetMember.budget_resumed`.
        """
        old = self._held.get(member, 0)
        if held:
            self._held[member] = held
            if large:
                self._large[member] = None
            else:
                self._large.pop(member, None)
        else:
            self._held.pop(member, None)
            self._large.pop(member, None)
        lead_left = member is self._lead and not (held and large)
        if lead_left:
            self._lead = None
        self.used += held - old
        if held < old or lead_left:
            self._wake()
        if not large or not held or self.used <= self.limit:
            self._paused.pop(member, None)
            return True
        lead = self._lead if self._lead is not None else self._choose_lead()
        if lead is None or member is lead or member.frame_missing < lead.frame_missing:
            # (a member with fewer bytes missing goes first; the previous one
            # pauses at its next update)
            self._lead = member
            self._paused.pop(member, None)
            return True
        self._paused[member] = None
        return False

    def release(self, member: BudgetMember) -> None:
        """``member`` holds nothing any more (frame done, connection closed)."""
        self._paused.pop(member, None)
        if member in self._held:
            self.update(member, 0, large=False)

    def _first(self) -> BudgetMember | None:
        """The large assembler with the fewest bytes missing (first started wins)."""
        best: BudgetMember | None = None
        best_missing = 0
        for member in self._large:
            missing = member.frame_missing
            if best is None or missing < best_missing:
                best, best_missing = member, missing
        return best

    def _choose_lead(self) -> BudgetMember | None:
        """Pick the member that goes first afresh; resume it if it was paused."""
        lead = self._lead = self._first()
        if lead is not None and lead in self._paused:
            del self._paused[lead]
            lead.budget_resumed()
        return lead

    def _wake(self) -> None:
        """Resume the paused members that may read now."""
        if not self._paused:
            return
        if self.used <= self.limit:
            woken = list(self._paused)
            self._paused.clear()
            for member in woken:
                member.budget_resumed()
        elif self._lead is None:
            self._choose_lead()
