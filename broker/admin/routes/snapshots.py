"""Admin HTTP routes for partition snapshots and their schedule.

    POST /v1/snapshots                  {"topic": "t", "partitions": [0], "incremental": false,
                                         "compression": "none", "with_group_offsets": false}
                                        -> 200 [{topic, partition, snapshot_id, path,
                                                 leader_epoch, broker_id, ...}]
                                        in a cluster each partition is cut by its
                                        leader, in that broker's data/snapshots
                                        (broker.snapshots.routing); "local": true
                                        cuts only what this broker leads
    GET  /v1/snapshots                  every snapshot with its ingest status and reason
    GET  /v1/snapshots/{topic_id}/{snapshot_id}   one snapshot: status and meta.json
    POST /v1/snapshots/scan             rescan data/snapshots now (returns after the scan)
    PUT  /v1/snapshots/upload           a verified snapshot handed over by a non-leader
                                        (streamed; format: broker.snapshots.handover)
    GET  /v1/snapshots/group-offsets?topic=t   committed offsets of t in the groups
                                        this broker coordinates (cluster mode)
    POST /v1/snapshots/group-offsets    {"topic", "partition", "offsets": [...]}: restore
                                        them where the group has no newer commit

    GET  /v1/snapshots/schedule         the snapshot schedule and its last round

503 until the broker is ready, 404 for an unknown snapshot or
topic, 400 for a malformed request; an upload that breaks a bound or does not
verify is refused (400, 413, 422, 507) and nothing of it is kept.
"""

from __future__ import annotations

import json

from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable
from broker.snapshots.create import (
    SnapshotRequestError,
    create_snapshots,
    describe,
    list_all,
)
from broker.snapshots.group_restore import RESTORE_PATH, restore_coordinated
from broker.snapshots.handover import UPLOAD_PATH, UploadRefused, receive_snapshot
from broker.snapshots.routing import (
    GROUP_OFFSETS_PATH,
    create_routed,
    local_group_offsets,
    send_copies,
)
from broker.snapshots.service import SnapshotService
from storage.snapshot_groups import GroupOffset


def _unavailable(view: AdminView) -> HttpResponse | None:
    """The 503 answered until the broker is ready; None once it is."""
    if view.ctx is None or not view.runtime.ready:
        return HttpResponse.error(503, "snapshot watcher not running")
    return None


def _service(view: AdminView) -> SnapshotService:
    assert view.ctx is not None  # checked by _unavailable
    return view.ctx.snapshots


async def _create(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (unavailable := _unavailable(view)) is not None:
        return unavailable
    svc = _service(view)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return HttpResponse.error(400, "body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("topic"), str):
        return HttpResponse.error(400, "topic is required")
    parts = body.get("partitions")
    if isinstance(body.get("partition"), int):
        parts = [body["partition"]]
    if parts is not None and not (
        isinstance(parts, list)
        and all(isinstance(p, int) and not isinstance(p, bool) for p in parts)
    ):
        return HttpResponse.error(400, "partitions must be a list of integers")
    compression = body.get("compression", "none")
    if not isinstance(compression, str):
        return HttpResponse.error(400, "compression must be a string")
    given = _given_offsets(body.get("group_offsets"))
    try:
        if body.get("local") is True:
            results = await create_snapshots(
                svc,
                topic=body["topic"],
                partitions=parts,
                incremental=bool(body.get("incremental", False)),
                compression=compression,
                with_group_offsets=bool(body.get("with_group_offsets", False)),
                given_offsets=given,
            )
            gather_to = body.get("gather_to")
            if isinstance(gather_to, str):
                await send_copies(svc, results, gather_to)
        else:
            results = await create_routed(
                svc,
                topic=body["topic"],
                partitions=parts,
                incremental=bool(body.get("incremental", False)),
                compression=compression,
                with_group_offsets=bool(body.get("with_group_offsets", False)),
            )
    except SnapshotRequestError as exc:
        status = 404 if "unknown topic" in str(exc) else 400
        return HttpResponse.error(status, str(exc))
    return HttpResponse.json(results)


def _given_offsets(raw: object) -> dict[int, list[GroupOffset]] | None:
    """The committed offsets a routing broker gathered (``{"0": [...]}``)."""
    if not isinstance(raw, dict):
        return None
    out: dict[int, list[GroupOffset]] = {}
    for key, rows in raw.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(rows, list)):
            continue
        out[int(key)] = []
        for row in rows:
            if isinstance(row, dict):
                try:
                    out[int(key)].append(GroupOffset.from_json(row))
                except (KeyError, TypeError, ValueError):
                    continue
    return out


async def _upload(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (unavailable := _unavailable(view)) is not None:
        return unavailable
    assert request.stream is not None  # a streaming route
    try:
        return HttpResponse.json(await receive_snapshot(_service(view), request.stream))
    except UploadRefused as exc:
        return HttpResponse.error(exc.status, str(exc))


def _group_offsets(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (unavailable := _unavailable(view)) is not None:
        return unavailable
    topic = request.query.get("topic", [""])[0]
    if not topic:
        return HttpResponse.error(400, "topic is required")
    return HttpResponse.json(local_group_offsets(_service(view), topic))


async def _restore_offsets(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (unavailable := _unavailable(view)) is not None:
        return unavailable
    try:
        body = json.loads(request.body or b"{}")
        topic, partition = body["topic"], body["partition"]
        offsets = [GroupOffset.from_json(o) for o in body["offsets"]]
    except (ValueError, KeyError, TypeError) as exc:
        return HttpResponse.error(400, f"bad request: {exc}")
    if not isinstance(topic, str) or type(partition) is not int:
        return HttpResponse.error(400, "topic and partition are required")
    svc = _service(view)
    return HttpResponse.json(
        await restore_coordinated(svc.groups, topic, partition, offsets)
    )


def _list(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (unavailable := _unavailable(view)) is not None:
        return unavailable
    svc = _service(view)
    return HttpResponse.json(list_all(svc))


async def _scan(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (unavailable := _unavailable(view)) is not None:
        return unavailable
    svc = _service(view)
    await svc.scan()
    return HttpResponse.json(list_all(svc))


def _show(view: AdminView, request: HttpRequest) -> HttpResponse:
    if (unavailable := _unavailable(view)) is not None:
        return unavailable
    svc = _service(view)
    topic_id, snapshot_id = request.params["topic_id"], request.params["snapshot_id"]
    if topic_id.startswith(".") or snapshot_id.startswith("."):
        return HttpResponse.error(404, "unknown snapshot")
    found = describe(svc, f"{topic_id}/{snapshot_id}")
    if found is None:
        return HttpResponse.error(404, "unknown snapshot")
    return HttpResponse.json(found)


def _schedule(view: AdminView, request: HttpRequest) -> HttpResponse:
    sched = None if view.ctx is None else view.ctx.scheduler
    if sched is None:
        return HttpResponse.json({"enabled": False, "rounds": 0})
    return HttpResponse.json(sched.to_json())


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("POST", "/v1/snapshots", _create, timeout_s=900)
    routes.add("PUT", UPLOAD_PATH, _upload, streaming=True, timeout_s=3600)
    routes.add("GET", GROUP_OFFSETS_PATH, _group_offsets)
    routes.add("POST", RESTORE_PATH, _restore_offsets, timeout_s=120)
    routes.add("GET", "/v1/snapshots", _list)
    routes.add("POST", "/v1/snapshots/scan", _scan)
    routes.add("GET", "/v1/snapshots/{topic_id}/{snapshot_id}", _show)
    routes.add("GET", "/v1/snapshots/schedule", _schedule)
