"""OffsetDelete's decision (KIP-496) and the ``consumer`` subscription decoder it uses."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from broker.groups.consumer_protocol import decode_consumer_subscription
from broker.groups.group import Group, Member
from broker.groups.model import GroupState, JoinRequest, Protocol
from broker.groups.offset_delete import plan_offset_delete
from protocol.error_codes import ErrorCode as E


def subscription(topics: list[str], version: int = 1) -> bytes:
    """A ConsumerProtocolSubscription as Java and kafka-python clients write it."""
    out = struct.pack(">hi", version, len(topics))
    for t in topics:
        raw = t.encode()
        out += struct.pack(">h", len(raw)) + raw
    out += struct.pack(">i", -1)  # user data: null
    if version >= 1:
        out += struct.pack(">i", 0)  # owned partitions: none
    return out


def group(state: GroupState, protocol_type: str, *subscriptions: bytes) -> Group:
    g = Group("g", 0)
    g.state = state
    g.protocol_type = protocol_type
    g.protocol_name = "range"
    for i, metadata in enumerate(subscriptions):
        req = JoinRequest(
            token=0,
            group_id="g",
            member_id=f"m{i}",
            session_timeout_ms=10_000,
            rebalance_timeout_ms=10_000,
            protocol_type=protocol_type,
            protocols=(Protocol(name="range", metadata=metadata),),
        )
        g.members[f"m{i}"] = Member(f"m{i}", req, 0)
    return g


WANTED = [("a", 0), ("a", 1), ("b", 0)]


def test_an_unknown_group_without_offsets_is_not_found() -> None:
    """No group and no offsets: GROUP_ID_NOT_FOUND; offsets alone are deletable."""
    assert plan_offset_delete(None, False, WANTED) == (E.GROUP_ID_NOT_FOUND, {})
    top, codes = plan_offset_delete(None, True, WANTED)
    assert top == E.NONE
    assert set(codes.values()) == {E.NONE}


def test_every_offset_of_an_empty_group_may_go() -> None:
    """An Empty group loses any of its offsets."""
    top, codes = plan_offset_delete(group(GroupState.EMPTY, ""), True, WANTED)
    assert top == E.NONE
    assert codes == dict.fromkeys(WANTED, E.NONE)


def test_topics_a_member_subscribes_to_are_kept() -> None:
    """A Stable consumer group keeps the offsets of topics its members subscribe
    to (GROUP_SUBSCRIBED_TO_TOPIC); the others may go."""
    g = group(GroupState.STABLE, "consumer", subscription(["a"]), subscription([]))
    top, codes = plan_offset_delete(g, True, WANTED)
    assert top == E.NONE
    assert codes == {
        ("a", 0): E.GROUP_SUBSCRIBED_TO_TOPIC,
        ("a", 1): E.GROUP_SUBSCRIBED_TO_TOPIC,
        ("b", 0): E.NONE,
    }


def test_an_unreadable_subscription_keeps_everything() -> None:
    """A member whose subscription cannot be decoded counts as subscribed to all."""
    g = group(GroupState.PREPARING_REBALANCE, "consumer", b"\x00")
    _, codes = plan_offset_delete(g, True, WANTED)
    assert set(codes.values()) == {E.GROUP_SUBSCRIBED_TO_TOPIC}


def test_another_protocol_with_members_is_a_non_empty_group() -> None:
    """A connect (or other non-consumer) group with members: NON_EMPTY_GROUP."""
    g = group(GroupState.STABLE, "connect", subscription(["a"]))
    assert plan_offset_delete(g, True, WANTED) == (E.NON_EMPTY_GROUP, {})


def test_a_dead_group_without_offsets_is_not_found() -> None:
    """Dead counts as unknown."""
    dead = group(GroupState.DEAD, "consumer")
    assert plan_offset_delete(dead, False, WANTED) == (E.GROUP_ID_NOT_FOUND, {})


topic_names = st.lists(st.text(min_size=1, max_size=20), max_size=8)


@given(topic_names, st.sampled_from([0, 1, 3]))
def test_subscription_round_trips(topics: list[str], version: int) -> None:
    """Every subscription version decodes to the topics it lists."""
    assert decode_consumer_subscription(subscription(topics, version)) == set(topics)


@given(st.binary(max_size=64))
def test_subscription_decoder_never_raises(data: bytes) -> None:
    """Arbitrary bytes decode to a set of topics or None, never an exception."""
    result = decode_consumer_subscription(data)
    assert result is None or isinstance(result, set)
