"""The classic consumer-group coordinator as a pure state machine (no I/O, no loop).

Owns group membership and rebalancing, modelled on Kafka's ``GroupCoordinator`` /
``GroupMetadata`` (the classic protocol): states Empty → PreparingRebalance →
CompletingRebalance → Stable (and Dead once deleted); dynamic members (KIP-394:
JoinGroup v4+ first answers MEMBER_ID_REQUIRED with a fresh id), static members
(KIP-345: ``group.instance.id``; a rejoin replaces the old member id, which is then
FENCED_INSTANCE_ID, without a rebalance while the group is Stable and its protocol
stays — the leader's too, KIP-814), protocol selection by the members' votes, leader election,
rebalance and session timeouts, and an initial rebalance delay (default 0).

Every call takes ``now_ms`` (a monotonic clock in ms) and returns its answer plus
:data:`~broker.groups.model.Effect` values. Deadlines live in one heap owned here;
:meth:`GroupCoordinator.tick` fires those that are due and
:meth:`GroupCoordinator.next_deadline` tells the driver when to call it next. A
fired timer re-checks the state it guards, so stale timers are harmless and a
heartbeat never needs a new timer (the old one re-arms itself).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Iterable

from broker.groups.group import Group, GroupRegistry, Member, fail_waiting
from broker.groups.model import (
    Effect,
    GroupState,
    JoinRequest,
    JoinResult,
    LeavingMember,
    Protocol,
    Reply,
    ScheduleTimer,
    SyncRequest,
    SyncResult,
)
from protocol.error_codes import ErrorCode

E = ErrorCode
S = GroupState


class GroupCoordinator(GroupRegistry):
    """All groups of this broker; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        initial_rebalance_delay_ms: int = 0,
        min_session_timeout_ms: int = 1_000,
        max_session_timeout_ms: int = 1_800_000,
        new_member_id: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__()
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self._new_member_id = new_member_id or (
            lambda client: f"{client}-{uuid.uuid4()}"
        )
        self._timers: list[tuple[int, tuple[str, str, str]]] = []
        # key → due time of its one live heap entry; other entries are stale.
        self._armed: dict[tuple[str, str, str], int] = {}
        # Groups whose membership must be stored (a generation completed, the group
        # emptied, a static member's id changed): the driver takes them after each
        # call (Kafka's storeGroup points).
        self.changed: set[str] = set()

    # -- timers --------------------------------------------------------------------

    def _schedule(
        self, effects: list[Effect], key: tuple[str, str, str], at: int
    ) -> None:
        armed = self._armed.get(key)
        if armed is not None and armed <= at:
            return  # the earlier timer re-checks and re-arms itself when it fires
        self._armed[key] = at
        heapq.heappush(self._timers, (at, key))
        effects.append(ScheduleTimer(key=key, at_ms=at))

    def next_deadline(self) -> int | None:
        """When :meth:`tick` must next be called (None: no deadline pending)."""
        return self._timers[0][0] if self._timers else None

    def tick(self, now_ms: int) -> list[Effect]:
        """Fire every deadline that is due: expire sessions, finish rebalances."""
        effects: list[Effect] = []
        while self._timers and self._timers[0][0] <= now_ms:
            at, key = heapq.heappop(self._timers)
            if self._armed.get(key) != at:
                continue  # superseded by an earlier entry for the same key
            del self._armed[key]
            kind, group_id, arg = key
            group = self.groups.get(group_id)
            if group is None:
                continue
            if kind == "session":
                self._on_session_timer(group, arg, now_ms, effects)
            elif kind == "pending":
                deadline = group.pending.get(arg)
                if deadline is not None and deadline <= now_ms:
                    del group.pending[arg]
                    self._maybe_complete_join(group, now_ms, effects)
            elif kind == "rebalance":
                if (
                    group.state is S.PREPARING_REBALANCE
                    and str(group.rebalance_epoch) == arg
                    and group.rebalance_deadline <= now_ms
                ):
                    self._complete_join(group, now_ms, effects)
                elif (
                    group.state is S.PREPARING_REBALANCE
                    and str(group.rebalance_epoch) == arg
                ):
                    key = ("rebalance", group.group_id, arg)
                    self._schedule(effects, key, group.rebalance_deadline)
            elif kind == "sync" and (
                group.state is S.COMPLETING_REBALANCE and str(group.generation) == arg
            ):
                # The leader never sent its assignment: drop those that did not sync
                # (Kafka's pending-sync expiry) and start over.
                for m in list(group.members.values()):
                    if m.sync_token is None:
                        self._remove_member(group, m.member_id, effects)
                self._prepare_rebalance(group, now_ms, effects)
        return effects

    def _on_session_timer(
        self, group: Group, member_id: str, now_ms: int, effects: list[Effect]
    ) -> None:
        member = group.members.get(member_id)
        if member is None:
            return
        key = ("session", group.group_id, member_id)
        if member.join_token is not None or member.sync_token is not None:
            # A member waiting on us is alive; its session restarts when answered.
            member.session_deadline = now_ms + member.session_timeout_ms
            self._schedule(effects, key, member.session_deadline)
        elif member.session_deadline > now_ms:
            self._schedule(effects, key, member.session_deadline)
        else:
            self._remove_member(group, member_id, effects)
            self._after_removal(group, now_ms, effects)

    def _touch(self, group: Group, member: Member, now_ms: int) -> None:
        member.session_deadline = now_ms + member.session_timeout_ms

    # -- helpers -------------------------------------------------------------------

    def _set_state(self, group: Group, state: GroupState, now_ms: int) -> None:
        if group.state is not state:
            group.state = state
            group.state_since_ms = now_ms

    def _remove_member(
        self, group: Group, member_id: str, effects: list[Effect]
    ) -> None:
        member = group.members.pop(member_id)
        if member.group_instance_id is not None:
            group.static.pop(member.group_instance_id, None)
        effects.extend(fail_waiting(member, E.UNKNOWN_MEMBER_ID))
        if group.leader_id == member_id:
            group.leader_id = next(iter(group.members), None)

    def _after_removal(self, group: Group, now_ms: int, effects: list[Effect]) -> None:
        if group.state in (S.STABLE, S.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, now_ms, effects)
        self._maybe_complete_join(group, now_ms, effects)

    def _prepare_rebalance(
        self, group: Group, now_ms: int, effects: list[Effect]
    ) -> None:
        if group.state is S.COMPLETING_REBALANCE:
            for m in group.members.values():
                m.assignment = b""
                if m.sync_token is not None:
                    effects.append(
                        Reply(
                            token=m.sync_token,
                            result=SyncResult(error=E.REBALANCE_IN_PROGRESS),
                        )
                    )
                    m.sync_token = None
        delay = self.initial_rebalance_delay_ms
        max_rebalance = max(
            (m.rebalance_timeout_ms for m in group.members.values()), default=0
        )
        group.rebalance_epoch += 1
        if group.state is S.EMPTY and delay > 0:
            group.initial_delay_until = now_ms + max(max_rebalance, delay)
            group.rebalance_deadline = min(now_ms + delay, group.initial_delay_until)
        else:
            group.initial_delay_until = None
            group.rebalance_deadline = now_ms + max_rebalance
        self._set_state(group, S.PREPARING_REBALANCE, now_ms)
        key = ("rebalance", group.group_id, str(group.rebalance_epoch))
        self._schedule(effects, key, group.rebalance_deadline)

    def _maybe_complete_join(
        self, group: Group, now_ms: int, effects: list[Effect]
    ) -> None:
        if (
            group.state is not S.PREPARING_REBALANCE
            or group.initial_delay_until is not None
        ):
            return
        if not group.pending and all(
            m.join_token is not None for m in group.members.values()
        ):
            self._complete_join(group, now_ms, effects)

    def _complete_join(self, group: Group, now_ms: int, effects: list[Effect]) -> None:
        # Dynamic members that did not rejoin in time are out (Kafka's onCompleteJoin);
        # static ones keep their place until their session expires.
        for m in list(group.members.values()):
            if m.join_token is None and m.group_instance_id is None:
                self._remove_member(group, m.member_id, effects)
        group.initial_delay_until = None
        group.generation += 1
        if not group.members:
            group.protocol_name = None
            group.leader_id = None
            self._set_state(group, S.EMPTY, now_ms)
            self.changed.add(group.group_id)
            return
        group.protocol_name = group.select_protocol()
        leader = group.members.get(group.leader_id or "")
        if leader is None or leader.join_token is None:
            joined = [m for m in group.members.values() if m.join_token is not None]
            group.leader_id = (joined or list(group.members.values()))[0].member_id
        self._set_state(group, S.COMPLETING_REBALANCE, now_ms)
        max_rebalance = 0
        for m in group.members.values():
            max_rebalance = max(max_rebalance, m.rebalance_timeout_ms)
            if m.join_token is not None:
                effects.append(
                    Reply(token=m.join_token, result=group.generation_result(m))
                )
                m.join_token = None
                self._touch(group, m, now_ms)
                self._schedule(
                    effects,
                    ("session", group.group_id, m.member_id),
                    m.session_deadline,
                )
        self._schedule(
            effects,
            ("sync", group.group_id, str(group.generation)),
            now_ms + max_rebalance,
        )

    def _add_member(
        self,
        group: Group,
        member_id: str,
        req: JoinRequest,
        now_ms: int,
        effects: list[Effect],
    ) -> None:
        member = Member(member_id, req, now_ms)
        member.join_token = req.token
        if not group.members:
            group.protocol_type = req.protocol_type
        group.members[member_id] = member
        if req.group_instance_id is not None:
            group.static[req.group_instance_id] = member_id
        if group.leader_id is None:
            group.leader_id = member_id
        self._schedule(
            effects, ("session", group.group_id, member_id), member.session_deadline
        )
        self._rebalance_for_join(group, now_ms, effects)

    def _rebalance_for_join(
        self, group: Group, now_ms: int, effects: list[Effect]
    ) -> None:
        if group.state in (S.EMPTY, S.STABLE, S.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, now_ms, effects)
        elif group.initial_delay_until is not None:
            # A new member during the initial delay extends it (InitialDelayedJoin).
            group.rebalance_deadline = min(
                now_ms + self.initial_rebalance_delay_ms, group.initial_delay_until
            )
            key = ("rebalance", group.group_id, str(group.rebalance_epoch))
            self._schedule(effects, key, group.rebalance_deadline)
        self._maybe_complete_join(group, now_ms, effects)

    # -- JoinGroup -----------------------------------------------------------------

    def join(self, req: JoinRequest, now_ms: int) -> list[Effect]:
        """Handle a JoinGroup; the answer for ``req.token`` is a Reply, now or later."""
        effects: list[Effect] = []

        def fail(error: ErrorCode) -> list[Effect]:
            effects.append(
                Reply(
                    token=req.token,
                    result=JoinResult(error=error, member_id=req.member_id),
                )
            )
            return effects

        if not req.group_id:
            return fail(E.INVALID_GROUP_ID)
        if not (
            self.min_session_timeout_ms
            <= req.session_timeout_ms
            <= self.max_session_timeout_ms
        ):
            return fail(E.INVALID_SESSION_TIMEOUT)
        if req.member_id and req.group_id not in self.groups:
            return fail(E.UNKNOWN_MEMBER_ID)
        if not req.protocol_type or not req.protocols:
            return fail(E.INCONSISTENT_GROUP_PROTOCOL)
        group = self._group(req.group_id, now_ms)
        if group.members and (
            req.protocol_type != group.protocol_type
            or not group.candidate_protocols() & {p.name for p in req.protocols}
        ):
            return fail(E.INCONSISTENT_GROUP_PROTOCOL)
        if not req.member_id:
            return self._join_new(group, req, now_ms, effects)
        return self._join_known(group, req, now_ms, effects)

    def _join_new(
        self, group: Group, req: JoinRequest, now_ms: int, effects: list[Effect]
    ) -> list[Effect]:
        member_id = self._new_member_id(req.client_id)
        if req.group_instance_id is not None:
            old_id = group.static.get(req.group_instance_id)
            if old_id is not None:
                self._replace_static(group, old_id, member_id, req, now_ms, effects)
                return effects
            self._add_member(group, member_id, req, now_ms, effects)
        elif req.require_known_member_id:
            deadline = now_ms + req.session_timeout_ms
            group.pending[member_id] = deadline
            self._schedule(effects, ("pending", group.group_id, member_id), deadline)
            effects.append(
                Reply(
                    token=req.token,
                    result=JoinResult(error=E.MEMBER_ID_REQUIRED, member_id=member_id),
                )
            )
        else:
            self._add_member(group, member_id, req, now_ms, effects)
        return effects

    def _replace_static(
        self,
        group: Group,
        old_id: str,
        new_id: str,
        req: JoinRequest,
        now_ms: int,
        effects: list[Effect],
    ) -> None:
        """A static member came back under a new member id (KIP-345)."""
        old = group.members.pop(old_id)
        effects.extend(fail_waiting(old, E.FENCED_INSTANCE_ID))
        old.member_id = new_id
        old.join_token = old.sync_token = None
        old.update(req)
        group.members[new_id] = old
        group.static[req.group_instance_id or ""] = new_id
        was_leader = group.leader_id == old_id
        if was_leader:
            group.leader_id = new_id
        self._touch(group, old, now_ms)
        self._schedule(
            effects, ("session", group.group_id, new_id), old.session_deadline
        )
        if group.state is S.STABLE and group.select_protocol() == group.protocol_name:
            # Nothing changes for the group, leader or not (Kafka's
            # updateStaticMemberAndRebalance): the current generation is handed
            # back and the member's SyncGroup gets its stored assignment.
            result = group.static_rejoin_result(
                old, old_id, was_leader=was_leader, skip=req.supports_skip_assignment
            )
            self.changed.add(group.group_id)
            effects.append(Reply(token=req.token, result=result))
            return
        old.join_token = req.token
        self._rebalance_for_join(group, now_ms, effects)

    def _join_known(
        self, group: Group, req: JoinRequest, now_ms: int, effects: list[Effect]
    ) -> list[Effect]:
        if req.member_id in group.pending:
            del group.pending[req.member_id]
            self._add_member(group, req.member_id, req, now_ms, effects)
            return effects
        if group.fenced(req.member_id, req.group_instance_id):
            effects.append(
                Reply(
                    token=req.token,
                    result=JoinResult(
                        error=E.FENCED_INSTANCE_ID, member_id=req.member_id
                    ),
                )
            )
            return effects
        member = group.members.get(req.member_id)
        if member is None:
            effects.append(
                Reply(
                    token=req.token,
                    result=JoinResult(
                        error=E.UNKNOWN_MEMBER_ID, member_id=req.member_id
                    ),
                )
            )
            return effects
        self._touch(group, member, now_ms)
        if member.join_token is not None:
            # A duplicate join (the client gave up on the first): only the last counts.
            effects.append(
                Reply(
                    token=member.join_token,
                    result=JoinResult(
                        error=E.REBALANCE_IN_PROGRESS, member_id=member.member_id
                    ),
                )
            )
            member.join_token = None
        changed = member.protocols != req.protocols
        if group.state is S.PREPARING_REBALANCE:
            member.update(req)
            member.join_token = req.token
            self._maybe_complete_join(group, now_ms, effects)
        elif not changed and (
            group.state is S.COMPLETING_REBALANCE
            or (group.state is S.STABLE and member.member_id != group.leader_id)
        ):
            effects.append(
                Reply(token=req.token, result=group.generation_result(member))
            )
        else:
            member.update(req)
            member.join_token = req.token
            self._prepare_rebalance(group, now_ms, effects)
            self._maybe_complete_join(group, now_ms, effects)
        return effects

    # -- SyncGroup -----------------------------------------------------------------

    def sync(self, req: SyncRequest, now_ms: int) -> list[Effect]:
        """Handle a SyncGroup; followers wait for the leader's assignment."""
        effects: list[Effect] = []

        def answer(error: ErrorCode, assignment: bytes = b"") -> list[Effect]:
            group = self.groups.get(req.group_id)
            result = SyncResult(
                error=error,
                protocol_type=group.protocol_type if group else None,
                protocol_name=group.protocol_name if group else None,
                assignment=assignment,
            )
            effects.append(Reply(token=req.token, result=result))
            return effects

        group = self.groups.get(req.group_id)
        if group is None:
            return answer(E.UNKNOWN_MEMBER_ID)
        if group.fenced(req.member_id, req.group_instance_id):
            return answer(E.FENCED_INSTANCE_ID)
        member = group.members.get(req.member_id)
        if member is None:
            return answer(E.UNKNOWN_MEMBER_ID)
        if req.generation_id != group.generation:
            return answer(E.ILLEGAL_GENERATION)
        if (
            req.protocol_type is not None and req.protocol_type != group.protocol_type
        ) or (
            req.protocol_name is not None and req.protocol_name != group.protocol_name
        ):
            return answer(E.INCONSISTENT_GROUP_PROTOCOL)
        if group.state is S.PREPARING_REBALANCE:
            return answer(E.REBALANCE_IN_PROGRESS)
        if group.state is S.STABLE:
            self._touch(group, member, now_ms)
            return answer(E.NONE, member.assignment)
        if group.state is not S.COMPLETING_REBALANCE:
            return answer(E.UNKNOWN_MEMBER_ID)
        self._touch(group, member, now_ms)
        if member.sync_token is not None:
            effects.append(
                Reply(
                    token=member.sync_token,
                    result=SyncResult(error=E.REBALANCE_IN_PROGRESS),
                )
            )
        member.sync_token = req.token
        if member.member_id == group.leader_id:
            given = dict(req.assignments)
            self._set_state(group, S.STABLE, now_ms)
            self.changed.add(group.group_id)
            for m in group.members.values():
                m.assignment = given.get(m.member_id, b"")
                if m.sync_token is not None:
                    effects.append(
                        Reply(
                            token=m.sync_token,
                            result=SyncResult(
                                error=E.NONE,
                                protocol_type=group.protocol_type,
                                protocol_name=group.protocol_name,
                                assignment=m.assignment,
                            ),
                        )
                    )
                    m.sync_token = None
                    self._touch(group, m, now_ms)
        return effects

    # -- Heartbeat, LeaveGroup -----------------------------------------------------

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        now_ms: int,
    ) -> ErrorCode:
        """Handle a Heartbeat: keep the session alive, signal a rebalance."""
        group = self.groups.get(group_id)
        if group is None:
            return E.UNKNOWN_MEMBER_ID
        if group.fenced(member_id, group_instance_id):
            return E.FENCED_INSTANCE_ID
        member = group.members.get(member_id)
        if member is None:
            return E.UNKNOWN_MEMBER_ID
        if generation_id != group.generation:
            return E.ILLEGAL_GENERATION
        self._touch(group, member, now_ms)
        if group.state is S.PREPARING_REBALANCE:
            return E.REBALANCE_IN_PROGRESS
        return E.NONE

    def leave(
        self, group_id: str, leaving: Iterable[LeavingMember], now_ms: int
    ) -> tuple[list[ErrorCode], list[Effect]]:
        """Handle a LeaveGroup (one error per named member, in order)."""
        effects: list[Effect] = []
        errors: list[ErrorCode] = []
        group = self.groups.get(group_id)
        removed = False
        for who in leaving:
            if group is None:
                errors.append(E.UNKNOWN_MEMBER_ID)
                continue
            if who.group_instance_id is not None:
                member_id = group.static.get(who.group_instance_id)
                if member_id is None:
                    errors.append(E.UNKNOWN_MEMBER_ID)
                    continue
                if who.member_id and who.member_id != member_id:
                    errors.append(E.FENCED_INSTANCE_ID)
                    continue
            else:
                member_id = who.member_id
            if member_id in group.pending:
                del group.pending[member_id]
                errors.append(E.NONE)
                removed = True
                continue
            if member_id not in group.members:
                errors.append(E.UNKNOWN_MEMBER_ID)
                continue
            self._remove_member(group, member_id, effects)
            errors.append(E.NONE)
            removed = True
        if group is not None and removed:
            self._after_removal(group, now_ms, effects)
        return errors, effects

    # -- offsets, admin --------------------------------------------------------------

    def validate_commit(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        now_ms: int,
    ) -> ErrorCode:
        """May this OffsetCommit be written? (Kafka's handleCommitOffsets checks.)

        A commit with generation -1 to an unknown or empty group is a "simple"
        commit of a standalone consumer and creates the group (Empty).
        """
        group = self.groups.get(group_id)
        if group is None:
            if generation_id < 0:
                self._group(group_id, now_ms)
                return E.NONE
            return E.ILLEGAL_GENERATION
        if group.fenced(member_id, group_instance_id):
            return E.FENCED_INSTANCE_ID
        if generation_id < 0 and group.state is S.EMPTY:
            return E.NONE
        member = group.members.get(member_id)
        if member is None:
            return E.UNKNOWN_MEMBER_ID
        if generation_id != group.generation:
            return E.ILLEGAL_GENERATION
        if group.state is S.COMPLETING_REBALANCE:
            return E.REBALANCE_IN_PROGRESS
        self._touch(group, member, now_ms)
        return E.NONE

    def delete_group(self, group_id: str) -> ErrorCode:
        """DeleteGroups for one group: only Empty groups go (their offsets too)."""
        group = self.groups.get(group_id)
        if group is None:
            return E.GROUP_ID_NOT_FOUND
        if group.state is not S.EMPTY or group.members or group.pending:
            return E.NON_EMPTY_GROUP
        group.state = S.DEAD
        del self.groups[group_id]
        return E.NONE

    def load_group(self, group: Group, now_ms: int) -> list[Effect]:
        """Take a group reloaded from the offset store (:mod:`broker.groups
        .persisted`): its members keep their ids and generation and must heartbeat
        within a session from ``now_ms``, else they expire as usual."""
        effects: list[Effect] = []
        self.groups[group.group_id] = group
        for m in group.members.values():
            m.session_deadline = now_ms + m.session_timeout_ms
            key = ("session", group.group_id, m.member_id)
            self._schedule(effects, key, m.session_deadline)
        return effects

    def unload(self, group_ids: Iterable[str]) -> list[Effect]:
        """Another broker coordinates these groups now (cluster mode: the offsets
        partition's leadership moved): they go, and whatever their members wait
        for is answered NOT_COORDINATOR (Kafka's ``onResignation``)."""
        effects: list[Effect] = []
        for group_id in group_ids:
            group = self.groups.pop(group_id, None)
            if group is None:
                continue
            group.state = S.DEAD
            for member in group.members.values():
                effects.extend(fail_waiting(member, E.NOT_COORDINATOR))
        return effects


__all__ = ["Group", "GroupCoordinator", "Member", "Protocol"]
