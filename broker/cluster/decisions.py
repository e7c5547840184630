"""The controller's decisions on one partition, as pure functions: a partition's
state and the live brokers in, the new state out (None: nothing to change; a
:class:`~broker.cluster.model.RequestError`: the request is refused).

Kafka's ZooKeeper-era rules (``PartitionStateMachine``/``ReplicaStateMachine``,
KIP-455 for reassignment), with KRaft's epochs: every change of the record bumps
``partition_epoch``, every change of leader bumps ``leader_epoch``, and the record
carries the epoch of the controller that wrote it. A leader is always a live
replica in the ISR (unclean election aside) and never a broker that is shutting
down (``fenced``); with no such replica the partition goes offline
(``leader = -1``) and keeps its last ISR, so the broker that held it last can take
it back when it returns.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from broker.cluster.model import NO_LEADER, PartitionRecord, RequestError
from protocol.error_codes import ErrorCode


def changed(
    rec: PartitionRecord,
    *,
    epoch: int,
    leader: int | None = None,
    isr: Sequence[int] | None = None,
    replicas: Sequence[int] | None = None,
    adding: Sequence[int] | None = None,
    removing: Sequence[int] | None = None,
) -> PartitionRecord:
    """``rec`` with the given fields changed and its epochs moved on."""
    new_leader = rec.leader if leader is None else leader
    return replace(
        rec,
        leader=new_leader,
        leader_epoch=rec.leader_epoch + (new_leader != rec.leader),
        isr=rec.isr if isr is None else tuple(isr),
        replicas=rec.replicas if replicas is None else tuple(replicas),
        adding=rec.adding if adding is None else tuple(adding),
        removing=rec.removing if removing is None else tuple(removing),
        partition_epoch=rec.partition_epoch + 1,
        controller_epoch=epoch,
    )


def new_partition(
    replicas: Sequence[int],
    live: Collection[int],
    epoch: int,
    fenced: Collection[int] = (),
) -> PartitionRecord:
    """A new partition: every live replica in sync (they are all empty), led by
    the first of them that is not shutting down."""
    isr = tuple(r for r in replicas if r in live)
    leaders = [r for r in isr if r not in fenced] or list(isr)
    return PartitionRecord(
        replicas=tuple(replicas),
        leader=leaders[0] if leaders else NO_LEADER,
        leader_epoch=0,
        isr=isr,
        partition_epoch=0,
        controller_epoch=epoch,
    )


def _candidates(
    rec: PartitionRecord, live: Collection[int], fenced: Collection[int], but: int
) -> list[int]:
    """Replicas that may lead, in preference order: live, in the ISR, not
    shutting down, not ``but``."""
    return [
        r
        for r in rec.replicas
        if r in rec.isr and r in live and r not in fenced and r != but
    ]


def for_liveness(
    rec: PartitionRecord,
    live: Collection[int],
    *,
    epoch: int,
    fenced: Collection[int] = (),
    unclean: bool = False,
) -> PartitionRecord | None:
    """The partition after brokers came or went.

    A leader that is no longer live hands over to the first live ISR replica
    (the brokers gone leave the ISR); with none the partition goes offline with
    its ISR unchanged. An offline partition takes the first live ISR replica back
    (``unclean``: any live replica, which becomes the whole ISR). Followers that
    are gone leave the ISR of a partition whose leader is live.
    """
    if rec.leader != NO_LEADER and rec.leader in live:
        isr = [r for r in rec.isr if r in live]
        if rec.leader in isr and len(isr) < len(rec.isr):
            return changed(rec, epoch=epoch, isr=isr)
        return None
    cands = _candidates(rec, live, fenced, NO_LEADER)
    if cands:
        return changed(
            rec, epoch=epoch, leader=cands[0], isr=[r for r in rec.isr if r in live]
        )
    if unclean:
        anyone = [r for r in rec.replicas if r in live and r not in fenced]
        if anyone:
            return changed(rec, epoch=epoch, leader=anyone[0], isr=[anyone[0]])
    if rec.leader == NO_LEADER:
        return None
    return changed(rec, epoch=epoch, leader=NO_LEADER)


def shut_down(
    rec: PartitionRecord,
    broker: int,
    live: Collection[int],
    *,
    epoch: int,
    fenced: Collection[int] = (),
) -> PartitionRecord | None:
    """The partition while ``broker`` shuts down (controlled shutdown): its
    leadership moves to another live ISR replica, and it leaves the ISR where
    others remain. With no other replica to lead, it keeps leading."""
    others = [r for r in rec.isr if r != broker]
    if rec.leader == broker:
        cands = _candidates(rec, live, fenced, broker)
        if not cands:
            return None
        return changed(rec, epoch=epoch, leader=cands[0], isr=others)
    if broker in rec.isr and others and rec.leader in others:
        return changed(rec, epoch=epoch, isr=others)
    return None


def elect_preferred(
    rec: PartitionRecord, live: Collection[int], *, epoch: int
) -> PartitionRecord | RequestError:
    """Preferred election: the first replica leads if it is live and in sync."""
    preferred = rec.replicas[0] if rec.replicas else NO_LEADER
    if preferred == rec.leader:
        return RequestError(
            code=ErrorCode.ELECTION_NOT_NEEDED,
            message=f"The preferred replica {preferred} already leads.",
        )
    if preferred not in live or preferred not in rec.isr:
        return RequestError(
            code=ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
            message=f"The preferred replica {preferred} is not live and in sync.",
        )
    return changed(rec, epoch=epoch, leader=preferred)


def elect_unclean(
    rec: PartitionRecord, live: Collection[int], *, epoch: int
) -> PartitionRecord | RequestError:
    """Unclean election (KIP-460): a partition without a live leader takes the
    first live ISR replica, else any live replica (which becomes the ISR)."""
    if rec.leader != NO_LEADER and rec.leader in live:
        return RequestError(
            code=ErrorCode.ELECTION_NOT_NEEDED,
            message=f"The partition has a live leader ({rec.leader}).",
        )
    new = for_liveness(rec, live, epoch=epoch, unclean=True)
    if new is None or new.leader == NO_LEADER:
        return RequestError(
            code=ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
            message="No replica of the partition is live.",
        )
    return new


def _origin(rec: PartitionRecord) -> list[int]:
    """The replicas before the reassignment in progress (all when none is)."""
    return [r for r in rec.replicas if r not in rec.adding]


def reassign(
    rec: PartitionRecord, target: Sequence[int], live: Collection[int], *, epoch: int
) -> PartitionRecord | RequestError:
    """Start (or replace, or with an empty target cancel) a reassignment
    (KIP-455): the replicas become the target followed by the replicas it
    drops, ``adding`` the target's new replicas, ``removing`` the dropped ones.
    It completes (:func:`complete_reassignment`) once every target replica is in
    sync; a target already in sync completes at once."""
    if not target:
        if not rec.adding and not rec.removing:
            return RequestError(
                code=ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
                message="No reassignment is in progress for the partition.",
            )
        return _cancel(rec, live, epoch=epoch)
    if len(set(target)) != len(target):
        return RequestError(
            code=ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            message=f"Duplicate replicas in {list(target)}.",
        )
    missing = sorted(set(target) - set(live))
    if missing:
        return RequestError(
            code=ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            message=f"Brokers {missing} are not available.",
        )
    origin = _origin(rec)
    started = changed(
        rec,
        epoch=epoch,
        replicas=[*target, *(r for r in origin if r not in target)],
        adding=[r for r in target if r not in origin],
        removing=[r for r in origin if r not in target],
    )
    done = complete_reassignment(started, live, epoch=epoch)
    if done is None:
        return started
    # Started and completed in one write: one change of the record.
    return replace(
        done,
        partition_epoch=started.partition_epoch,
        leader_epoch=rec.leader_epoch + (done.leader != rec.leader),
    )


def target_of(rec: PartitionRecord) -> list[int]:
    """The replicas a reassignment in progress moves to."""
    return [r for r in rec.replicas if r not in rec.removing]


def complete_reassignment(
    rec: PartitionRecord, live: Collection[int], *, epoch: int
) -> PartitionRecord | None:
    """The partition once every target replica is in sync: the target is the
    assignment, the removed replicas leave the ISR, and a removed leader hands
    over to the first live target replica in sync (None: not yet, or no
    reassignment in progress)."""
    if not rec.adding and not rec.removing:
        return None
    target = target_of(rec)
    if not all(r in rec.isr for r in target):
        return None
    return _settled(rec, target, live, epoch=epoch)


def _cancel(
    rec: PartitionRecord, live: Collection[int], *, epoch: int
) -> PartitionRecord:
    """Back to the replicas before the reassignment; added replicas leave the ISR."""
    # No original replica in sync: keep the last ISR.
    return _settled(rec, _origin(rec), live, epoch=epoch, keep_isr=True)


def _settled(
    rec: PartitionRecord,
    replicas: Sequence[int],
    live: Collection[int],
    *,
    epoch: int,
    keep_isr: bool = False,
) -> PartitionRecord:
    """The partition on ``replicas`` with no reassignment in progress: the other
    replicas leave the ISR (``keep_isr``: the ISR stays if none would be left), and
    a leader not among them hands over to the first live one in sync."""
    isr = [r for r in rec.isr if r in replicas]
    leader = rec.leader
    if leader not in replicas:
        cands = [r for r in replicas if r in isr and r in live]
        leader = cands[0] if cands else NO_LEADER
    return changed(
        rec,
        epoch=epoch,
        replicas=replicas,
        isr=(isr or rec.isr) if keep_isr else isr,
        leader=leader,
        adding=(),
        removing=(),
    )
