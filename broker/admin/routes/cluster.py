"""Admin routes for the cluster: brokers, the cluster's health, partition states,
and the operator's two partition writes (preferred-leader election, reassignment).

    GET  /v1/brokers                       live brokers: id, rack, endpoints, admin
                                           address, controller mark, partitions led
                                           and hosted (public: what clients learn)
    GET  /v1/cluster                       cluster id, controller, broker count,
                                           partitions total/leaderless/under-replicated,
                                           nodes down, ``healthy``, ``warnings``
                                           (transactions open past their timeout)
    GET  /v1/partitions                    every partition of every topic
    GET  /v1/partitions/{topic}            one topic's partitions: leader, leader epoch,
                                           replicas, ISR, offline replicas, reassignment,
                                           and offsets where this broker holds a replica
    POST /v1/partitions/{topic}/{i}/elect     {"unclean": false} (body optional)
    POST /v1/partitions/{topic}/{i}/reassign  {"replicas": [1, 2, 3]} ([] cancels)

In cluster mode the state is this broker's watched cache (what every broker acts on;
no etcd call on a GET), and the writes are admin requests to the controller through
the :class:`broker.cluster.service.ClusterService`. A single node answers the GETs as
a cluster of one (it is the controller and leads every partition) and refuses the
writes with 400. The cluster gauges of ``GET /metrics`` come from the same rows
(:func:`cluster_metric_lines`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import anyio

from broker.admin.routes.transactions import stuck_transactions
from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable
from broker.cluster.model import NO_LEADER, BrokerInfo, RequestError
from broker.context import BrokerContext
from protocol.error_codes import ErrorCode
from storage.errors import StorageError

# The admin server gives a request 10 s in all; a controller that has not answered by
# then gets a 504 that says so, rather than a dropped connection.
WRITE_WAIT_S = 8.0

SINGLE_NODE = (
    "this broker is a single node (no --cluster): it leads every partition, so "
    "there is no leader to elect and no replica to move"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionRow:
    """One partition's state as this broker knows it."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    def leaderless(self, live: set[int]) -> bool:
        """No leader, or a leader whose broker is gone (the controller has yet to
        move it)."""
        return self.leader == NO_LEADER or self.leader not in live

    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.partition}"


def partition_rows(ctx: BrokerContext, topic: str | None = None) -> list[PartitionRow]:
    """Every partition (of ``topic`` only, if given), by topic and index."""
    if ctx.coordination is not None:
        cache = ctx.coordination.cache
        names = [t.name for t in cache.topics()] if topic is None else [topic]
        return [
            PartitionRow(
                topic=name,
                partition=i,
                leader=p.leader,
                leader_epoch=p.leader_epoch,
                replicas=p.replicas,
                isr=p.isr,
                adding=p.adding,
                removing=p.removing,
            )
            for name in names
            for i, p in cache.partitions_of(name)
        ]
    logs = ctx.topics.logs
    metas = (
        sorted(logs.topics(), key=lambda m: m.name)
        if topic is None
        else [m for m in (ctx.topics.find(topic),) if m is not None]
    )
    rows = []
    for meta in metas:
        for i in range(meta.partition_count):
            try:
                state = ctx.topics.state(meta, logs.partition(meta.name, i))
            except StorageError:
                continue  # deleted while we read
            rows.append(
                PartitionRow(
                    topic=meta.name,
                    partition=i,
                    leader=state.leader_id,
                    leader_epoch=state.leader_epoch,
                    replicas=state.replicas,
                    isr=state.isr,
                )
            )
    return rows


def _topic_exists(ctx: BrokerContext, topic: str) -> bool:
    if ctx.coordination is not None:
        return ctx.coordination.cache.topic(topic) is not None
    return ctx.topics.find(topic) is not None


def _live(ctx: BrokerContext) -> set[int]:
    return {b.node_id for b in ctx.cluster.brokers()}


def _local_offsets(ctx: BrokerContext, row: PartitionRow) -> dict[str, int] | None:
    """Offsets of this broker's replica (None where it holds none)."""
    if ctx.config.node_id not in row.replicas:
        return None
    meta = ctx.topics.find(row.topic)
    if meta is None:
        return None
    try:
        plog = ctx.topics.logs.partition(row.topic, row.partition)
        state = ctx.topics.state(meta, plog)
    except StorageError:
        return None
    return {
        "log_start_offset": state.log_start_offset,
        "high_watermark": state.high_watermark,
        "log_end_offset": plog.log_end_offset,
        "size_bytes": plog.size_bytes,
    }


def _partition_json(
    ctx: BrokerContext, row: PartitionRow, live: set[int]
) -> dict[str, object]:
    return {
        "topic": row.topic,
        "partition": row.partition,
        "leader": row.leader,
        "leader_epoch": row.leader_epoch,
        "replicas": list(row.replicas),
        "isr": list(row.isr),
        "offline_replicas": [r for r in row.replicas if r not in live],
        "adding_replicas": list(row.adding),
        "removing_replicas": list(row.removing),
        "leaderless": row.leaderless(live),
        "under_replicated": row.under_replicated(),
        "local": _local_offsets(ctx, row),
    }


# -- GET ------------------------------------------------------------------------


def _not_ready(view: AdminView) -> HttpResponse | None:
    if view.ctx is None or not view.runtime.ready:
        return HttpResponse.error(503, "starting")
    return None


def _admin_of(view: AdminView, ctx: BrokerContext, b: BrokerInfo) -> object:
    if b.node_id == ctx.config.node_id and view.runtime.admin_address is not None:
        host, port = view.runtime.admin_address
        return {"host": host, "port": port}
    if b.admin is None:
        return None
    host, _, raw_port = b.admin.rpartition(":")
    if not raw_port.isdigit():
        return None
    return {"host": host.strip("[]"), "port": int(raw_port)}


def _self_only(view: AdminView) -> list[dict[str, object]]:
    """This node while its services are still starting."""
    return [
        {
            "node_id": view.config.node_id,
            "cluster_id": view.config.cluster_id,
            "rack": None if view.config.cluster is None else view.config.cluster.rack,
            "listeners": [b.as_json() for b in view.runtime.listeners.values()],
            "endpoints": [],
            "admin": None
            if view.runtime.admin_address is None
            else {
                "host": view.runtime.admin_address[0],
                "port": view.runtime.admin_address[1],
            },
            "is_controller": view.config.cluster is None,
            "is_self": True,
            "leader_partitions": 0,
            "replica_partitions": 0,
        }
    ]


def _brokers(view: AdminView, request: HttpRequest) -> HttpResponse:
    ctx = view.ctx
    if ctx is None:
        return HttpResponse.json(_self_only(view))
    rows = partition_rows(ctx)
    controller = ctx.cluster.controller_id
    out = []
    for b in ctx.cluster.brokers():
        me = b.node_id == ctx.config.node_id
        out.append(
            {
                "node_id": b.node_id,
                "cluster_id": ctx.cluster.cluster_id,
                "rack": b.rack,
                # this broker's bound sockets; the others' are not known here
                "listeners": [x.as_json() for x in view.runtime.listeners.values()]
                if me
                else [],
                "endpoints": [e.to_json() for e in b.endpoints],
                "admin": _admin_of(view, ctx, b),
                "is_controller": b.node_id == controller,
                "is_self": me,
                "leader_partitions": sum(1 for r in rows if r.leader == b.node_id),
                "replica_partitions": sum(1 for r in rows if b.node_id in r.replicas),
            }
        )
    return HttpResponse.json(out)


def cluster_overview(ctx: BrokerContext) -> dict[str, object]:
    """What ``GET /v1/cluster`` answers (also the base of the cluster gauges)."""
    rows = partition_rows(ctx)
    live = _live(ctx)
    controller = ctx.cluster.controller_id
    leaderless = [r.name for r in rows if r.leaderless(live)]
    under = [r.name for r in rows if r.under_replicated()]
    down = sorted({n for r in rows for n in r.replicas} - live)
    reasons = []
    if controller == NO_LEADER or controller not in live:
        reasons.append("no_controller")
    if leaderless:
        reasons.append("leaderless_partitions")
    stuck = stuck_transactions(ctx)
    return {
        "cluster_id": ctx.cluster.cluster_id,
        "clustered": ctx.cluster.clustered,
        "node_id": ctx.config.node_id,
        "controller_id": controller,
        "brokers": len(live),
        "broker_ids": sorted(live),
        "nodes_down": down,
        "topics": len({r.topic for r in rows}),
        "partitions": len(rows),
        "leaderless_partitions": leaderless,
        "offline_partitions": len(leaderless),
        "under_replicated_partitions": under,
        "reassigning_partitions": [r.name for r in rows if r.adding or r.removing],
        "healthy": not reasons,
        "unhealthy_reasons": reasons,
        # not unhealthy, but an operator should look (docs/transactions.md)
        "warnings": ["stuck_transactions"] if stuck else [],
        "stuck_transactions": stuck,
    }


def _cluster(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (not_ready := _not_ready(view)) is not None:
        return not_ready
    assert view.ctx is not None
    return HttpResponse.json(cluster_overview(view.ctx))


def _all_partitions(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (not_ready := _not_ready(view)) is not None:
        return not_ready
    ctx = view.ctx
    assert ctx is not None
    live = _live(ctx)
    return HttpResponse.json(
        [_partition_json(ctx, r, live) for r in partition_rows(ctx)]
    )


def _partitions(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (not_ready := _not_ready(view)) is not None:
        return not_ready
    ctx = view.ctx
    assert ctx is not None
    topic = request.params["topic"]
    if not _topic_exists(ctx, topic):
        return HttpResponse.error(404, f"unknown topic {topic!r}")
    live = _live(ctx)
    return HttpResponse.json(
        [_partition_json(ctx, r, live) for r in partition_rows(ctx, topic)]
    )


# -- POST -----------------------------------------------------------------------


def _refusal(error: RequestError) -> HttpResponse:
    """The controller's refusal as an HTTP answer naming the Kafka error."""
    try:
        name = ErrorCode(error.code).name
    except ValueError:
        name = f"ERROR_{error.code}"
    if error.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
        status = 404
    elif error.code == ErrorCode.REQUEST_TIMED_OUT:
        status = 504
    else:
        status = 400
    return HttpResponse.json(
        {
            "error": f"{name}: {error.message}" if error.message else name,
            "error_code": error.code,
            "error_name": name,
        },
        status=status,
    )


def _target(
    view: AdminView, request: HttpRequest
) -> tuple[BrokerContext, str, int] | HttpResponse:
    """The context, topic and partition of a write, or the answer refusing it."""
    if (not_ready := _not_ready(view)) is not None:
        return not_ready
    ctx = view.ctx
    assert ctx is not None
    if ctx.coordination is None:
        return HttpResponse.error(400, SINGLE_NODE)
    topic, raw = request.params["topic"], request.params["index"]
    if not raw.isdigit():
        return HttpResponse.error(400, f"partition {raw!r} is not a number")
    index = int(raw)
    if ctx.coordination.cache.partition(topic, index) is None:
        return HttpResponse.error(404, f"unknown partition {topic}/{index}")
    return ctx, topic, index


def _body(request: HttpRequest) -> dict[str, object] | HttpResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return HttpResponse.error(400, "body is not JSON")
    if not isinstance(body, dict):
        return HttpResponse.error(400, "body must be a JSON object")
    return body


def _after(ctx: BrokerContext, topic: str, index: int) -> HttpResponse:
    row = next((r for r in partition_rows(ctx, topic) if r.partition == index), None)
    if row is None:
        return HttpResponse.error(404, f"unknown partition {topic}/{index}")
    return HttpResponse.json(_partition_json(ctx, row, _live(ctx)))


def _timed_out(topic: str, index: int) -> HttpResponse:
    return HttpResponse.error(
        504,
        f"the controller did not answer within {WRITE_WAIT_S:g}s; the request may "
        f"still be applied (GET /v1/partitions/{topic})",
    )


def _write(
    view: AdminView, request: HttpRequest
) -> tuple[BrokerContext, str, int, dict[str, object]] | HttpResponse:
    """The context, topic, partition and JSON body of a partition write, or the
    answer refusing it."""
    found = _target(view, request)
    if isinstance(found, HttpResponse):
        return found
    body = _body(request)
    if isinstance(body, HttpResponse):
        return body
    return (*found, body)


async def _ask(
    ctx: BrokerContext,
    topic: str,
    index: int,
    ask: Callable[[], Awaitable[RequestError | None]],
    *,
    fine: ErrorCode | None = None,
) -> HttpResponse:
    """The partition once the controller has answered ``ask`` (a refusal with the
    ``fine`` code counts as done), its refusal, or a 504 when it did not answer."""
    with anyio.move_on_after(WRITE_WAIT_S):
        error = await ask()
        if error is not None and error.code != fine:
            return _refusal(error)
        return _after(ctx, topic, index)
    return _timed_out(topic, index)


async def _elect(view: AdminView, request: HttpRequest) -> HttpResponse:
    found = _write(view, request)
    if isinstance(found, HttpResponse):
        return found
    ctx, topic, index, body = found
    unclean = body.get("unclean", False)
    if not isinstance(unclean, bool):
        return HttpResponse.error(400, "unclean must be true or false")
    coordination = ctx.coordination
    assert coordination is not None
    return await _ask(
        ctx,
        topic,
        index,
        lambda: coordination.elect(topic, index, unclean=unclean),
        fine=ErrorCode.ELECTION_NOT_NEEDED,  # already led by its preferred replica
    )


def _replicas(value: object) -> Sequence[int] | None:
    if not isinstance(value, list) or not all(
        isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in value
    ):
        return None
    return value if len(set(value)) == len(value) else None


async def _reassign(view: AdminView, request: HttpRequest) -> HttpResponse:
    found = _write(view, request)
    if isinstance(found, HttpResponse):
        return found
    ctx, topic, index, body = found
    replicas = _replicas(body.get("replicas"))
    if replicas is None:
        return HttpResponse.error(
            400,
            'replicas must be a list of distinct node ids ({"replicas": [1, 2, 3]}; '
            "[] cancels a reassignment in progress)",
        )
    coordination = ctx.coordination
    assert coordination is not None
    return await _ask(
        ctx, topic, index, lambda: coordination.reassign(topic, index, replicas)
    )


# -- metrics ----------------------------------------------------------------------


def cluster_metric_lines(view: AdminView) -> Iterator[str]:
    """The cluster gauges of ``GET /metrics`` (docs/metrics.md)."""
    ctx = view.ctx
    values: dict[str, int] = {}
    if ctx is not None and view.runtime.ready:
        rows = partition_rows(ctx)
        live = _live(ctx)
        controller = ctx.cluster.controller_id
        me = ctx.config.node_id
        values = {
            "ailurus_cluster_brokers": len(live),
            "ailurus_cluster_is_controller": int(controller == me),
            "ailurus_cluster_controller_id": controller,
            "ailurus_partitions_leader": sum(1 for r in rows if r.leader == me),
            "ailurus_partitions_offline": sum(1 for r in rows if r.leaderless(live)),
        }
    for name, text in (
        ("ailurus_cluster_brokers", "Live brokers this broker knows of."),
        ("ailurus_cluster_is_controller", "1 while this broker is the controller."),
        ("ailurus_cluster_controller_id", "The controller's node id (-1: none)."),
        ("ailurus_partitions_leader", "Partitions this broker leads."),
        (
            "ailurus_partitions_offline",
            "Partitions without a live leader, cluster-wide.",
        ),
    ):
        yield f"# HELP {name} {text}"
        yield f"# TYPE {name} gauge"
        if name in values:
            yield f"{name} {values[name]}"


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/v1/brokers", _brokers, public=True)
    routes.add("GET", "/v1/cluster", _cluster)
    routes.add("GET", "/v1/partitions", _all_partitions)
    routes.add("GET", "/v1/partitions/{topic}", _partitions)
    routes.add("POST", "/v1/partitions/{topic}/{index}/elect", _elect)
    routes.add("POST", "/v1/partitions/{topic}/{index}/reassign", _reassign)
