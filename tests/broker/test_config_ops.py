"""The edit semantics of (Incremental)AlterConfigs, against a model (Hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.configs.ops import (
    APPEND,
    DELETE,
    SET,
    SUBTRACT,
    Change,
    ConfigRefused,
    apply_incremental,
    replace_all,
    split_list,
)
from protocol.error_codes import ErrorCode

ITEMS = st.sampled_from(["delete", "compact", "0:1", "1:2", "*"])
LIST_KEYS = {"cleanup.policy", "leader.replication.throttled.replicas"}
KEYS = st.sampled_from([*sorted(LIST_KEYS), "retention.ms"])
DEFAULTS = {"cleanup.policy": "delete", "leader.replication.throttled.replicas": ""}


def list_value() -> st.SearchStrategy[str]:
    return st.lists(ITEMS, max_size=4, unique=True).map(",".join)


@st.composite
def changes(draw: st.DrawFn) -> list[Change]:
    keys = draw(st.lists(KEYS, unique=True, max_size=3))
    out = []
    for key in keys:
        if key in LIST_KEYS:
            op = draw(st.sampled_from([SET, DELETE, APPEND, SUBTRACT]))
            value = draw(list_value())
        else:
            op = draw(st.sampled_from([SET, DELETE]))
            value = str(draw(st.integers(0, 10**9)))
        out.append(Change(key, op, value))
    return out


def model(current: dict[str, str], edits: list[Change]) -> dict[str, str]:
    """Each key as an ordered set of items; the result as the broker stores it."""
    out = dict(current)
    for c in edits:
        assert c.value is not None
        if c.op == SET:
            out[c.name] = c.value
        elif c.op == DELETE:
            out.pop(c.name, None)
        else:
            start = out.get(c.name, DEFAULTS.get(c.name, ""))
            old = [i for i in start.split(",") if i]
            given_items = [i for i in c.value.split(",") if i]
            if c.op == APPEND:
                for item in given_items:
                    if item not in old:
                        old.append(item)
            else:
                old = [i for i in old if i not in given_items]
            out[c.name] = ",".join(old)
    return out


@given(
    current=st.dictionaries(KEYS, list_value(), max_size=3),
    edits=changes(),
)
def test_incremental_ops_match_the_model(
    current: dict[str, str], edits: list[Change]
) -> None:
    """SET/DELETE/APPEND/SUBTRACT give what the ordered-set model gives, and a list
    never holds an item twice."""
    got = apply_incremental(
        current, edits, is_list=LIST_KEYS.__contains__, default_of=DEFAULTS.get
    )
    assert got == model(current, edits)
    for key in LIST_KEYS & set(got):
        assert len(split_list(got[key])) == len(set(split_list(got[key])))


def test_append_then_subtract_restores_the_default() -> None:
    """Appending items not in a list and subtracting them again leaves the list."""
    items = "compact,0:1"
    got = apply_incremental(
        {},
        [Change("cleanup.policy", APPEND, items)],
        is_list=LIST_KEYS.__contains__,
        default_of=DEFAULTS.get,
    )
    assert got == {"cleanup.policy": "delete,compact,0:1"}
    back = apply_incremental(
        got,
        [Change("cleanup.policy", SUBTRACT, items)],
        is_list=LIST_KEYS.__contains__,
        default_of=DEFAULTS.get,
    )
    assert back == {"cleanup.policy": "delete"}


def refusal(current: dict[str, str], edits: list[Change]) -> ConfigRefused:
    try:
        apply_incremental(
            current, edits, is_list=LIST_KEYS.__contains__, default_of=DEFAULTS.get
        )
    except ConfigRefused as e:
        return e
    raise AssertionError("not refused")


def test_refusals_carry_kafkas_codes() -> None:
    """Non-list APPEND/SUBTRACT: INVALID_CONFIG; duplicates, nulls, bad ops:
    INVALID_REQUEST."""
    e = refusal({}, [Change("retention.ms", APPEND, "1")])
    assert e.code == ErrorCode.INVALID_CONFIG
    assert "because its type is not LIST" in e.message
    assert refusal({}, [Change("retention.ms", SUBTRACT, "1")]).code == 40
    dup = [Change("retention.ms", SET, "1"), Change("retention.ms", DELETE, None)]
    assert refusal({}, dup).message == "Error due to duplicate config keys"
    assert refusal({}, [Change("retention.ms", SET, None)]).code == 42
    assert refusal({}, [Change("retention.ms", 9, "1")]).code == 42
    # DELETE needs no value
    assert (
        apply_incremental(
            {"retention.ms": "5"},
            [Change("retention.ms", DELETE, None)],
            is_list=LIST_KEYS.__contains__,
            default_of=DEFAULTS.get,
        )
        == {}
    )


def test_alter_configs_replaces_the_whole_set() -> None:
    """AlterConfigs: exactly the request's keys; a null value is refused."""
    assert replace_all([Change("a", SET, "1"), Change("b", SET, "2")]) == {
        "a": "1",
        "b": "2",
    }
    with pytest.raises(ConfigRefused) as info:
        replace_all([Change("a", SET, None)])
    assert info.value.code == ErrorCode.INVALID_REQUEST
