"""ElectLeaders (key 43), v0–2.

Behaviour: election type 0 makes each named partition's preferred replica (its
first) the leader, type 1 (unclean) any live replica when no in-sync one can lead; a
null topic list means every partition. Cluster mode: each election is a request to
the controller (through the cluster service), answered once this broker's cache
shows it, with the controller's code per partition: ELECTION_NOT_NEEDED (84, the
preferred replica leads already), PREFERRED_LEADER_NOT_AVAILABLE (80),
UNKNOWN_TOPIC_OR_PARTITION, REQUEST_TIMED_OUT. On a single node this node already
leads every partition: ELECTION_NOT_NEEDED for each known one. Another election
type gets INVALID_REQUEST per partition.
Version notes: v0 preferred elections only; v1 election_type and a top-level error
code; v2 flexible.
"""

from __future__ import annotations

from broker.cluster.model import RequestError
from broker.cluster.outcomes import Outcomes, ask_each, by_topic
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.elect_leaders import (
    ElectLeadersRequest,
    ElectLeadersResponse,
    PartitionResult,
    ReplicaElectionResult,
)

PREFERRED, UNCLEAN = 0, 1


@handler(api_key=43, name="elect_leaders", max_version=2)
def elect_leaders(rctx: RequestContext, request: ElectLeadersRequest) -> object:
    ctx = rctx.broker
    cache = ctx.topics.cache
    cluster = ctx.topics.cluster
    wanted: list[tuple[str, int]] = []
    if request.topic_partitions is None:
        if cache is None:
            wanted = [
                (m.name, i)
                for m in ctx.topics.logs.topics()
                for i in range(m.partition_count)
            ]
        else:
            wanted = [(t.name, i) for t in cache.topics() for i in range(t.partitions)]
    else:
        wanted = [(t.topic, i) for t in request.topic_partitions for i in t.partitions]
    codes: Outcomes = {}
    asking: list[tuple[str, int, bool]] = []
    for topic, index in dict.fromkeys(wanted):
        if request.election_type not in (PREFERRED, UNCLEAN):
            codes[(topic, index)] = (ErrorCode.INVALID_REQUEST, "unknown election type")
        elif cache is None:
            meta = ctx.topics.find(topic)
            if meta is None or not 0 <= index < meta.partition_count:
                codes[(topic, index)] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
            else:
                codes[(topic, index)] = (
                    ErrorCode.ELECTION_NOT_NEEDED,
                    "the only replica leads already",
                )
        elif cache.partition(topic, index) is None:
            codes[(topic, index)] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
        else:
            asking.append((topic, index, request.election_type == UNCLEAN))

    def response() -> ElectLeadersResponse:
        grouped = by_topic(codes, ctx.metrics, "elect_leaders")
        return ElectLeadersResponse(
            error_code=ErrorCode.NONE,
            replica_election_results=tuple(
                ReplicaElectionResult(
                    topic=topic,
                    partition_result=tuple(
                        PartitionResult(
                            partition_id=index, error_code=code, error_message=msg
                        )
                        for index, code, msg in rs
                    ),
                )
                for topic, rs in grouped.items()
            ),
        )

    if not asking or cluster is None:
        return response()

    async def elect(topic: str, index: int, unclean: bool) -> RequestError | None:
        return await cluster.elect(topic, index, unclean=unclean)

    async def elect_all() -> ElectLeadersResponse:
        await ask_each(asking, elect, codes)
        return response()

    return Deferred(elect_all)
