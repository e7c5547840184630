"""The fetch session cache (KIP-227) against a model, and its eviction rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.fetch.context import (
    Full,
    Incremental,
    SessionError,
    Sessionless,
    finish,
    new_context,
    session_wanted,
)
from broker.fetch.sessions import CachedPartition, FetchSessionCache
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchableTopicResponse,
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    ForgottenTopic,
    PartitionData,
)

VERSION = 12
EVICTION_MS = 1_000
SLOTS = 3
TOPICS = ("a", "b")
Key = tuple[str, int]


def request(
    session_id: int,
    epoch: int,
    parts: Sequence[Key] = (),
    forgotten: Sequence[Key] = (),
    *,
    offset: int = 0,
    replica_id: int = -1,
) -> FetchRequest:
    return FetchRequest(
        replica_id=replica_id,
        max_wait_ms=0,
        min_bytes=1,
        isolation_level=0,
        session_id=session_id,
        session_epoch=epoch,
        topics=tuple(
            FetchTopic(
                topic=t,
                partitions=tuple(
                    FetchPartition(
                        partition=i, fetch_offset=offset, partition_max_bytes=1024
                    )
                    for tt, i in parts
                    if tt == t
                ),
            )
            for t in TOPICS
            if any(tt == t for tt, _ in parts)
        ),
        forgotten_topics_data=tuple(
            ForgottenTopic(
                topic=t, partitions=tuple(i for tt, i in forgotten if tt == t)
            )
            for t in TOPICS
            if any(tt == t for tt, _ in forgotten)
        ),
        rack_id="",
    )


def response_for(
    wanted: Sequence[tuple[str, bytes, Sequence[object]]], hw: dict[Key, int]
) -> FetchResponse:
    """What the handler would build: every wanted partition, no records."""
    topics = []
    for name, topic_id, parts in wanted:
        datas = []
        for p in parts:
            assert isinstance(p, FetchPartition | CachedPartition)
            datas.append(
                PartitionData(
                    partition_index=p.partition,
                    error_code=ErrorCode.NONE,
                    high_watermark=hw.get((name, p.partition), 0),
                    log_start_offset=0,
                    records=b"",
                )
            )
        topics.append(
            FetchableTopicResponse(
                topic=name, topic_id=topic_id, partitions=tuple(datas)
            )
        )
    return FetchResponse(error_code=0, session_id=0, responses=tuple(topics))


def full_fetch(
    cache: FetchSessionCache,
    parts: Sequence[Key],
    now: int,
    *,
    privileged: bool = False,
    hw: dict[Key, int] | None = None,
) -> int:
    """A full fetch asking for a session; the session id answered (0: none)."""
    req = request(0, 0, parts, replica_id=1 if privileged else -1)
    context = new_context(cache, req, VERSION, now)
    assert isinstance(context, Full)
    wanted = [(t.topic, t.topic_id, t.partitions) for t in req.topics]
    resp = finish(
        context,
        cache,
        response_for(wanted, hw or {}),
        wanted,
        privileged=privileged,
        version=VERSION,
        now_ms=now,
    )
    return resp.session_id


def incremental(
    cache: FetchSessionCache,
    session_id: int,
    epoch: int,
    now: int,
    parts: Sequence[Key] = (),
    forgotten: Sequence[Key] = (),
    hw: dict[Key, int] | None = None,
    offset: int = 0,
) -> FetchResponse:
    req = request(session_id, epoch, parts, forgotten, offset=offset)
    context = new_context(cache, req, VERSION, now)
    if isinstance(context, SessionError):
        return FetchResponse(error_code=context.code, session_id=0, responses=())
    if isinstance(context, Sessionless):
        return FetchResponse(error_code=0, session_id=0, responses=())
    assert isinstance(context, Incremental)
    wanted = session_wanted(context.session)
    return finish(
        context,
        cache,
        response_for(wanted, hw or {}),
        wanted,
        privileged=False,
        version=VERSION,
        now_ms=now,
    )


def answered(resp: FetchResponse) -> set[Key]:
    return {(t.topic, p.partition_index) for t in resp.responses for p in t.partitions}


# -- examples ----------------------------------------------------------------------


def test_incremental_fetch_answers_only_partitions_with_news() -> None:
    """After the full fetch, a partition is answered again only when its high
    watermark moved; forgotten partitions leave the session."""
    cache = FetchSessionCache(SLOTS, EVICTION_MS)
    parts = [("a", 0), ("a", 1), ("b", 0)]
    sid = full_fetch(cache, parts, 0, hw={("a", 0): 5})
    assert sid != 0
    quiet = incremental(cache, sid, 1, 10, hw={("a", 0): 5})
    assert quiet.error_code == 0
    assert quiet.session_id == sid
    assert answered(quiet) == set()
    moved = incremental(cache, sid, 2, 20, hw={("a", 0): 5, ("b", 0): 3})
    assert answered(moved) == {("b", 0)}
    forgot = incremental(
        cache, sid, 3, 30, forgotten=[("a", 1)], hw={("a", 0): 5, ("b", 0): 3}
    )
    assert answered(forgot) == set()
    session = cache.get(sid)
    assert session is not None
    assert set(session.partitions) == {("a", 0), ("b", 0)}


def test_session_errors() -> None:
    """An unknown session is FETCH_SESSION_ID_NOT_FOUND, a wrong epoch
    INVALID_FETCH_SESSION_EPOCH, a v13 request on a v12 session
    FETCH_SESSION_TOPIC_ID_ERROR; the final epoch closes the session."""
    cache = FetchSessionCache(SLOTS, EVICTION_MS)
    sid = full_fetch(cache, [("a", 0)], 0)
    assert incremental(cache, sid + 1, 1, 1).error_code == (
        ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    )
    assert incremental(cache, sid, 5, 1).error_code == (
        ErrorCode.INVALID_FETCH_SESSION_EPOCH
    )
    context = new_context(cache, request(sid, 1), 13, 1)
    assert context == SessionError(ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR)
    assert isinstance(new_context(cache, request(sid, -1), VERSION, 2), Sessionless)
    assert cache.get(sid) is None


def test_full_cache_evicts_by_kafkas_rules() -> None:
    """A full cache takes a stale session's slot first; else a young session is
    kept; once older than the eviction time, the smallest session makes room for a
    larger one but not for one of its own size; a follower's session evicts a
    consumer's at once and is itself kept against consumers."""
    cache = FetchSessionCache(2, EVICTION_MS)
    small = full_fetch(cache, [("a", 0)], 0)
    big = full_fetch(cache, [("a", 0), ("a", 1), ("a", 2)], 0)
    assert 0 not in (small, big)
    assert full_fetch(cache, [("b", 0), ("b", 1)], 10) == 0  # both young
    incremental(cache, big, 1, 500)
    # small unused for more than the eviction time: stale, evicted first
    third = full_fetch(cache, [("b", 0)], 1_200)
    assert third != 0
    assert cache.get(small) is None
    assert cache.evicted == 1
    incremental(cache, big, 2, 2_250)
    incremental(cache, third, 1, 2_250)
    # third is young at 1,400: only big may go, and it ranks above 2 partitions
    assert full_fetch(cache, [("b", 1), ("b", 2)], 1_400) == 0
    # at 2,300 both are old (none stale): the smallest makes room for a larger one
    fourth = full_fetch(cache, [("b", 1), ("b", 2)], 2_300)
    assert fourth != 0
    assert cache.get(third) is None
    # the young fourth is kept; big (3) ranks with a 3-partition newcomer: kept
    assert full_fetch(cache, [("b", 3), ("b", 4), ("b", 5)], 2_400) == 0
    follower = full_fetch(cache, [("a", 9)], 2_500, privileged=True)
    assert follower != 0
    assert cache.get(fourth) is None  # young, but a consumer's
    assert len(cache) == 2
    assert full_fetch(cache, [("b", 7), ("b", 8)], 2_600) == 0


def test_zero_slots_keep_no_session() -> None:
    """max.incremental.fetch.session.cache.slots=0: every fetch is sessionless."""
    cache = FetchSessionCache(0, EVICTION_MS)
    assert full_fetch(cache, [("a", 0)], 0) == 0
    assert len(cache) == 0


# -- the state machine -------------------------------------------------------------

keys = st.tuples(st.sampled_from(TOPICS), st.integers(0, 3))


@dataclass
class ModelSession:
    privileged: bool
    parts: set[Key]
    epoch: int
    created: int
    last_used: int
    told: dict[Key, int] = field(default_factory=dict)


class SessionCacheMachine(RuleBasedStateMachine):
    """Random full fetches, incremental fetches (adds, updates, forgotten
    partitions, right and wrong epochs), closes and time passing, checked against
    a model of KIP-227's rules."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = FetchSessionCache(SLOTS, EVICTION_MS)
        self.model: dict[int, ModelSession] = {}
        self.now = 0
        self.hw: dict[Key, int] = {}

    def _model_evict(self, privileged: bool, size: int) -> bool:
        sessions = list(self.model.items())
        sid, oldest = min(sessions, key=lambda kv: (kv[1].last_used, kv[0]))
        if self.now - oldest.last_used > EVICTION_MS:
            del self.model[sid]
            return True
        ranked = sorted(
            (
                (s.privileged, len(s.parts), i)
                for i, s in sessions
                if self.now - s.created > EVICTION_MS
                or (privileged and not s.privileged)
            ),
        )
        if not ranked or (privileged, size) <= ranked[0][:2]:
            return False
        del self.model[ranked[0][2]]
        return True

    @rule(
        parts=st.lists(keys, min_size=1, max_size=5, unique=True),
        privileged=st.booleans(),
    )
    def full(self, parts: list[Key], privileged: bool) -> None:
        room = len(self.model) < SLOTS or self._model_evict(privileged, len(parts))
        sid = full_fetch(self.cache, parts, self.now, privileged=privileged, hw=self.hw)
        assert (sid != 0) == room
        if sid:
            self.model[sid] = ModelSession(
                privileged,
                set(parts),
                1,
                self.now,
                self.now,
                {k: self.hw.get(k, 0) for k in parts},
            )

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        adds=st.lists(keys, max_size=3, unique=True),
        forgets=st.lists(keys, max_size=3, unique=True),
        wrong_epoch=st.booleans(),
    )
    def fetch_incrementally(
        self,
        data: st.DataObject,
        adds: list[Key],
        forgets: list[Key],
        wrong_epoch: bool,
    ) -> None:
        # by position in creation order: session ids are random
        sid = list(self.model)[data.draw(st.integers(0, len(self.model) - 1))]
        m = self.model[sid]
        epoch = m.epoch + 7 if wrong_epoch else m.epoch
        resp = incremental(self.cache, sid, epoch, self.now, adds, forgets, self.hw)
        if wrong_epoch:
            assert resp.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
            return
        assert resp.error_code == 0
        m.parts = (m.parts | set(adds)) - set(forgets)
        for k in forgets:  # a partition added again is new to the session
            m.told.pop(k, None)
        if not m.parts:
            assert resp.session_id == 0
            del self.model[sid]
            return
        m.epoch += 1
        m.last_used = self.now
        news = {k for k in m.parts if k not in m.told or self.hw.get(k, 0) != m.told[k]}
        assert answered(resp) == news
        for k in news:
            m.told[k] = self.hw.get(k, 0)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        sid = list(self.model)[data.draw(st.integers(0, len(self.model) - 1))]
        context = new_context(self.cache, request(sid, -1), VERSION, self.now)
        assert isinstance(context, Sessionless)
        del self.model[sid]

    @rule(key=keys)
    def append(self, key: Key) -> None:
        self.hw[key] = self.hw.get(key, 0) + 1

    @rule(ms=st.integers(1, 2 * EVICTION_MS))
    def wait(self, ms: int) -> None:
        self.now += ms

    @invariant()
    def matches_the_model(self) -> None:
        assert len(self.cache) <= SLOTS
        assert {s.id for s in self.cache} == set(self.model)
        for session in self.cache:
            m = self.model[session.id]
            assert set(session.partitions) == m.parts
            assert session.epoch == m.epoch
            assert session.privileged == m.privileged


SessionCacheMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
test_session_cache_matches_the_model = SessionCacheMachine.TestCase
