"""The authorisation hook: denied parts get Kafka's errors, the rest reaches handlers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from broker.authz.middleware import AuthorizationDenied, Authorize
from broker.net.request import NO_RESPONSE, CloseConnection, Deferred
from broker.security.acl_binding import (
    AclBinding,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
)
from broker.security.service import SecurityService
from broker.security.settings import SecuritySettings
from protocol.error_codes import ErrorCode
from protocol.headers import RequestHeader
from protocol.messages import alter_configs as ac
from protocol.messages import create_topics as ct
from protocol.messages import describe_configs as dc
from protocol.messages import describe_groups as dsg
from protocol.messages import fetch as fe
from protocol.messages import heartbeat as hb
from protocol.messages import incremental_alter_configs as iac
from protocol.messages import list_groups as lsg
from protocol.messages import metadata as md
from protocol.messages import offset_commit as oc
from protocol.messages import offset_fetch as of
from protocol.messages import produce as pr
from protocol.messages import txn_offset_commit as toc
from protocol.messages import write_txn_markers as wtm


@pytest.fixture
def svc(tmp_path: Path) -> SecurityService:
    service = SecurityService(
        SecuritySettings(super_users=frozenset({"root"})),
        data_dir=tmp_path,
        listeners=("sasl_plaintext",),
    )
    service.store.set_password("alice", "pw", mechanisms=("SCRAM-SHA-256",))
    service.store.set_acls(
        "alice",
        (
            {"resource": "topic", "name": "orders", "operations": ["read", "write"]},
            {
                "resource": "topic",
                "name": "new-",
                "pattern": "prefixed",
                "operations": ["create"],
            },
            {"resource": "group", "name": "app", "operations": ["read"]},
        ),
    )
    return service


def rctx(
    svc: SecurityService, user: str | None, api_key: int, version: int
) -> SimpleNamespace:
    conn = svc.connection("sasl_plaintext", "127.0.0.1:5555")
    if user is not None:
        assert conn.sasl is not None
        conn.sasl.state = conn.sasl.state.COMPLETE
        conn.sasl.user = user
    broker = SimpleNamespace(
        security=svc,
        config=SimpleNamespace(auto_create_topics=True),
        topics=SimpleNamespace(find=lambda name: None, find_by_id=lambda raw: None),
    )
    return SimpleNamespace(
        broker=broker,
        security=conn,
        header=RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=1,
            client_id="t",
        ),
        api_version=version,
        listener="sasl_plaintext",
        peer="127.0.0.1:5555",
    )


def authorize(rctx: Any, request: object, handler: Callable[[object], Any]) -> Any:
    """Run the middleware with ``handler`` as the rest of the chain."""
    middleware = Authorize(rctx.broker.security, rctx.broker.topics)

    def call(inner: object, req: object) -> object:
        assert inner is rctx  # the chain gets the same request context
        return handler(req)

    return middleware(rctx, request, call)


def produce_request(*topics: str, acks: int = 1) -> pr.ProduceRequest:
    return pr.ProduceRequest(
        acks=acks,
        timeout_ms=1000,
        topic_data=tuple(
            pr.TopicProduceData(
                name=t, partition_data=(pr.PartitionProduceData(index=0, records=b""),)
            )
            for t in topics
        ),
    )


def ok_produce(req: object) -> pr.ProduceResponse:
    assert isinstance(req, pr.ProduceRequest)
    return pr.ProduceResponse(
        responses=tuple(
            pr.TopicProduceResponse(
                name=t.name,
                partition_responses=(
                    pr.PartitionProduceResponse(index=0, error_code=0, base_offset=7),
                ),
            )
            for t in req.topic_data
        )
    )


def codes(resp: pr.ProduceResponse) -> dict[str, int]:
    return {t.name: t.partition_responses[0].error_code for t in resp.responses}


def test_produce_to_denied_topic_gets_topic_authorization_failed(
    svc: SecurityService,
) -> None:
    """Allowed topics reach the handler; denied ones answer error 29."""
    seen: list[object] = []

    def handler(req: object) -> object:
        seen.append(req)
        return ok_produce(req)

    resp = authorize(
        rctx(svc, "alice", 0, 9), produce_request("orders", "secret"), handler
    )
    assert isinstance(resp, pr.ProduceResponse)
    assert codes(resp) == {"orders": 0, "secret": ErrorCode.TOPIC_AUTHORIZATION_FAILED}
    assert [t.name for t in seen[0].topic_data] == ["orders"]  # type: ignore[attr-defined]


def test_fully_denied_produce_never_reaches_the_handler(svc: SecurityService) -> None:
    """All topics denied: answered at once; acks=0 gets no response."""

    def handler(req: object) -> object:
        raise AssertionError("handler called")

    resp = authorize(rctx(svc, "alice", 0, 9), produce_request("secret"), handler)
    assert isinstance(resp, pr.ProduceResponse)
    assert codes(resp) == {"secret": 29}
    assert (
        authorize(rctx(svc, "alice", 0, 9), produce_request("x", acks=0), handler)
        is NO_RESPONSE
    )


def test_super_user_and_authorizer_off_pass_everything(
    tmp_path: Path, svc: SecurityService
) -> None:
    """Super users bypass ACLs; with the authorizer off nothing is checked."""
    resp = authorize(rctx(svc, "root", 0, 9), produce_request("secret"), ok_produce)
    assert codes(resp) == {"secret": 0}  # type: ignore[arg-type]
    off = SecurityService(
        SecuritySettings(authorizer=False),
        data_dir=tmp_path,
        listeners=("sasl_plaintext",),
    )
    resp = authorize(rctx(off, "nobody", 0, 9), produce_request("secret"), ok_produce)
    assert codes(resp) == {"secret": 0}  # type: ignore[arg-type]


def test_deferred_responses_are_merged_too(svc: SecurityService) -> None:
    """A Deferred handler result gets the denied topics' errors when it completes."""

    def handler(req: object) -> object:
        async def later() -> object:
            return ok_produce(req)

        return Deferred(later)

    result = authorize(
        rctx(svc, "alice", 0, 9), produce_request("orders", "secret"), handler
    )
    assert isinstance(result, Deferred)
    resp = anyio.run(result.run)
    assert codes(resp) == {"orders": 0, "secret": 29}  # type: ignore[arg-type]


def test_fetch_denied_topic(svc: SecurityService) -> None:
    """Fetch needs READ; a denied topic's partitions answer error 29."""
    req = fe.FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        topics=(
            fe.FetchTopic(
                topic="secret",
                partitions=(
                    fe.FetchPartition(
                        partition=0, fetch_offset=0, partition_max_bytes=1
                    ),
                ),
            ),
        ),
    )
    resp = authorize(rctx(svc, "alice", 1, 12), req, lambda r: pytest.fail("called"))
    assert isinstance(resp, fe.FetchResponse)
    assert resp.responses[0].partitions[0].error_code == 29


def test_metadata_filters_and_guards_auto_create(svc: SecurityService) -> None:
    """Undescribable topics get 29; auto-creating needs CREATE; all-topics is filtered."""
    req = md.MetadataRequest(
        topics=tuple(
            md.MetadataRequestTopic(name=n) for n in ("orders", "secret", "new-x")
        ),
        allow_auto_topic_creation=True,
    )
    seen: list[md.MetadataRequest] = []

    def handler(r: object) -> object:
        assert isinstance(r, md.MetadataRequest)
        seen.append(r)
        return md.MetadataResponse(
            brokers=(),
            topics=tuple(
                md.MetadataResponseTopic(error_code=0, name=t.name)
                for t in r.topics or ()
            ),
        )

    resp = authorize(rctx(svc, "alice", 3, 9), req, handler)
    assert isinstance(resp, md.MetadataResponse)
    # orders: describable but missing and no CREATE -> 29; new-x: CREATE via prefix,
    # but no DESCRIBE (create does not imply describe) -> 29 as Kafka does.
    assert {t.name: t.error_code for t in resp.topics} == {
        "orders": 29,
        "secret": 29,
        "new-x": 29,
    }

    everything = md.MetadataResponse(
        brokers=(),
        topics=tuple(
            md.MetadataResponseTopic(error_code=0, name=n) for n in ("orders", "secret")
        ),
    )
    resp = authorize(
        rctx(svc, "alice", 3, 9), md.MetadataRequest(topics=None), lambda r: everything
    )
    assert [t.name for t in resp.topics] == ["orders"]  # type: ignore[attr-defined]


def test_group_apis_need_group_read(svc: SecurityService) -> None:
    """Heartbeat on another group: GROUP_AUTHORIZATION_FAILED without the handler."""
    req = hb.HeartbeatRequest(group_id="other", generation_id=1, member_id="m")
    resp = authorize(rctx(svc, "alice", 12, 4), req, lambda r: pytest.fail("called"))
    assert resp == hb.HeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    ok = hb.HeartbeatRequest(group_id="app", generation_id=1, member_id="m")
    assert authorize(
        rctx(svc, "alice", 12, 4), ok, lambda r: hb.HeartbeatResponse(error_code=0)
    ) == hb.HeartbeatResponse(error_code=0)


def test_offset_commit_checks_group_then_topics(svc: SecurityService) -> None:
    """A denied group fails every partition with 30; a denied topic with 29."""

    def commit(group: str) -> oc.OffsetCommitRequest:
        return oc.OffsetCommitRequest(
            group_id=group,
            member_id="m",
            topics=tuple(
                oc.OffsetCommitRequestTopic(
                    name=t,
                    partitions=(
                        oc.OffsetCommitRequestPartition(
                            partition_index=0,
                            committed_offset=1,
                            committed_metadata=None,
                        ),
                    ),
                )
                for t in ("orders", "secret")
            ),
        )

    resp = authorize(
        rctx(svc, "alice", 8, 8), commit("other"), lambda r: pytest.fail("called")
    )
    assert {t.name: t.partitions[0].error_code for t in resp.topics} == {
        "orders": 30,
        "secret": 30,
    }  # type: ignore[attr-defined]

    def handler(r: object) -> object:
        assert isinstance(r, oc.OffsetCommitRequest)
        return oc.OffsetCommitResponse(
            topics=tuple(
                oc.OffsetCommitResponseTopic(
                    name=t.name,
                    partitions=(
                        oc.OffsetCommitResponsePartition(
                            partition_index=0, error_code=0
                        ),
                    ),
                )
                for t in r.topics
            )
        )

    resp = authorize(rctx(svc, "alice", 8, 8), commit("app"), handler)
    assert {t.name: t.partitions[0].error_code for t in resp.topics} == {
        "orders": 0,
        "secret": 29,
    }  # type: ignore[attr-defined]


def test_offset_fetch_v8_denied_group(svc: SecurityService) -> None:
    """OffsetFetch v8: each denied group answers error 30."""
    req = of.OffsetFetchRequest(
        groups=(of.OffsetFetchRequestGroup(group_id="other", topics=None),)
    )
    resp = authorize(rctx(svc, "alice", 9, 8), req, lambda r: pytest.fail("called"))
    assert isinstance(resp, of.OffsetFetchResponse)
    assert [(g.group_id, g.error_code) for g in resp.groups] == [("other", 30)]


def test_describe_and_list_groups_hide_other_groups(svc: SecurityService) -> None:
    """DescribeGroups fails other groups with 30; ListGroups omits them."""
    resp = authorize(
        rctx(svc, "alice", 15, 5),
        dsg.DescribeGroupsRequest(groups=("other",)),
        lambda r: pytest.fail("called"),
    )
    assert [(g.group_id, g.error_code) for g in resp.groups] == [("other", 30)]  # type: ignore[attr-defined]
    listed = lsg.ListGroupsResponse(
        error_code=0,
        groups=tuple(
            lsg.ListedGroup(group_id=g, protocol_type="consumer")
            for g in ("app", "other")
        ),
    )
    resp = authorize(
        rctx(svc, "alice", 16, 4), lsg.ListGroupsRequest(), lambda r: listed
    )
    assert [g.group_id for g in resp.groups] == ["app"]  # type: ignore[attr-defined]


def test_create_topics_needs_create(svc: SecurityService) -> None:
    """CreateTopics: CREATE per topic (prefix rules apply)."""
    req = ct.CreateTopicsRequest(
        topics=tuple(
            ct.CreatableTopic(
                name=n,
                num_partitions=1,
                replication_factor=1,
                assignments=(),
                configs=(),
            )
            for n in ("new-a", "other")
        )
    )

    def handler(r: object) -> object:
        assert isinstance(r, ct.CreateTopicsRequest)
        return ct.CreateTopicsResponse(
            topics=tuple(
                ct.CreatableTopicResult(name=t.name, error_code=0) for t in r.topics
            )
        )

    resp = authorize(rctx(svc, "alice", 19, 5), req, handler)
    assert {t.name: t.error_code for t in resp.topics} == {"new-a": 0, "other": 29}  # type: ignore[attr-defined]


def test_unknown_api_needs_a_super_user(svc: SecurityService) -> None:
    """An API without an authorisation rule is refused to ordinary users: the
    connection closes, logged as authorization_denied."""
    with pytest.raises(AuthorizationDenied) as denied:
        authorize(rctx(svc, "alice", 57, 1), object(), lambda r: pytest.fail("called"))
    assert isinstance(denied.value, CloseConnection)
    assert denied.value.event == "authorization_denied"
    assert authorize(rctx(svc, "root", 35, 1), "req", lambda r: "ok") == "ok"


def test_unauthenticated_principal_is_denied(svc: SecurityService) -> None:
    """Before SASL completes, the principal is nobody: everything is denied."""
    resp = authorize(
        rctx(svc, None, 0, 9),
        produce_request("orders"),
        lambda r: pytest.fail("called"),
    )
    assert codes(resp) == {"orders": 29}  # type: ignore[arg-type]


def test_follower_fetch_needs_a_super_user(svc: SecurityService) -> None:
    """A replica's Fetch (replica_id >= 0; v15+ in replica_state) is refused with
    error 29 on every topic unless the principal is a super user, even on topics the
    user may read."""
    partitions = (
        fe.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1),
    )

    def request(version: int) -> fe.FetchRequest:
        return fe.FetchRequest(
            replica_id=2 if version < 15 else -1,
            replica_state=fe.ReplicaState(replica_id=2 if version >= 15 else -1),
            max_wait_ms=0,
            min_bytes=1,
            topics=(fe.FetchTopic(topic="orders", partitions=partitions),),
        )

    for version in (12, 15):
        resp = authorize(
            rctx(svc, "alice", 1, version),
            request(version),
            lambda r: pytest.fail("called"),
        )
        assert isinstance(resp, fe.FetchResponse)
        assert resp.responses[0].partitions[0].error_code == 29
        passed = authorize(rctx(svc, "root", 1, version), request(version), lambda r: r)
        assert passed == request(version)


def test_write_txn_markers_needs_a_super_user(svc: SecurityService) -> None:
    """WriteTxnMarkers (Kafka: CLUSTER_ACTION) answers CLUSTER_AUTHORIZATION_FAILED
    for every partition of every marker unless the principal is a super user."""
    req = wtm.WriteTxnMarkersRequest(
        markers=(
            wtm.WritableTxnMarker(
                producer_id=7,
                producer_epoch=0,
                transaction_result=True,
                topics=(
                    wtm.WritableTxnMarkerTopic(name="orders", partition_indexes=(0, 1)),
                ),
                coordinator_epoch=0,
            ),
        )
    )
    resp = authorize(rctx(svc, "alice", 27, 1), req, lambda r: pytest.fail("called"))
    assert isinstance(resp, wtm.WriteTxnMarkersResponse)
    [marker] = resp.markers
    assert marker.producer_id == 7
    assert [(p.partition_index, p.error_code) for p in marker.topics[0].partitions] == [
        (0, ErrorCode.CLUSTER_AUTHORIZATION_FAILED),
        (1, ErrorCode.CLUSTER_AUTHORIZATION_FAILED),
    ]
    assert authorize(rctx(svc, "root", 27, 1), req, lambda r: r) == req


def test_txn_offset_commit_checks_transactional_id_group_and_topics(
    svc: SecurityService,
) -> None:
    """TxnOffsetCommit (Kafka's handleTxnOffsetCommitRequest): without WRITE on the
    transactional id every partition is 53; then READ on the group (30), then
    READ on each topic (29), the allowed topics reaching the handler."""

    def commit(group: str) -> toc.TxnOffsetCommitRequest:
        return toc.TxnOffsetCommitRequest(
            transactional_id="tx",
            group_id=group,
            producer_id=7,
            producer_epoch=0,
            topics=tuple(
                toc.TxnOffsetCommitRequestTopic(
                    name=t,
                    partitions=(
                        toc.TxnOffsetCommitRequestPartition(
                            partition_index=0,
                            committed_offset=1,
                            committed_metadata=None,
                        ),
                    ),
                )
                for t in ("orders", "secret")
            ),
        )

    def codes(resp: object) -> dict[str, int]:
        assert isinstance(resp, toc.TxnOffsetCommitResponse)
        return {t.name: t.partitions[0].error_code for t in resp.topics}

    denied = lambda r: pytest.fail("called")  # noqa: E731
    resp = authorize(rctx(svc, "alice", 28, 3), commit("app"), denied)
    assert codes(resp) == {"orders": 53, "secret": 53}
    grant = AclBinding(
        resource_type=ResourceType.TRANSACTIONAL_ID,
        name="tx",
        pattern=PatternType.LITERAL,
        principal="User:alice",
        host="*",
        operation=AclOperation.WRITE,
        permission=Permission.ALLOW,
    )
    anyio.run(svc.acls.create, [grant])
    resp = authorize(rctx(svc, "alice", 28, 3), commit("other"), denied)
    assert codes(resp) == {"orders": 30, "secret": 30}

    def handler(r: object) -> object:
        assert isinstance(r, toc.TxnOffsetCommitRequest)
        assert [t.name for t in r.topics] == ["orders"]
        return toc.TxnOffsetCommitResponse(
            topics=(
                toc.TxnOffsetCommitResponseTopic(
                    name="orders",
                    partitions=(
                        toc.TxnOffsetCommitResponsePartition(
                            partition_index=0, error_code=0
                        ),
                    ),
                ),
            )
        )

    resp = authorize(rctx(svc, "alice", 28, 3), commit("app"), handler)
    assert codes(resp) == {"orders": 0, "secret": 29}
    assert authorize(rctx(svc, "root", 28, 3), commit("x"), lambda r: r) == commit("x")


def test_config_changes_need_alter_configs(svc: SecurityService) -> None:
    """(Incremental)AlterConfigs: ALTER_CONFIGS on the topic (else error 29) and on
    the cluster for broker resources (else error 31); READ/WRITE do not suffice."""
    svc.store.set_acls(
        "alice",
        (
            {"resource": "topic", "name": "orders", "operations": ["read", "write"]},
            {"resource": "topic", "name": "tuned", "operations": ["alter_configs"]},
        ),
    )
    resources = tuple(
        iac.AlterConfigsResource(resource_type=kind, resource_name=name, configs=())
        for kind, name in ((2, "tuned"), (2, "orders"), (4, "0"), (8, "0"))
    )
    seen: list[object] = []

    def handler(r: object) -> object:
        assert isinstance(r, iac.IncrementalAlterConfigsRequest)
        seen.extend((x.resource_type, x.resource_name) for x in r.resources)
        return iac.IncrementalAlterConfigsResponse(
            throttle_time_ms=0,
            responses=tuple(
                iac.AlterConfigsResourceResponse(
                    error_code=0,
                    error_message=None,
                    resource_type=x.resource_type,
                    resource_name=x.resource_name,
                )
                for x in r.resources
            ),
        )

    req = iac.IncrementalAlterConfigsRequest(resources=resources, validate_only=False)
    resp = authorize(rctx(svc, "alice", 44, 1), req, handler)
    assert seen == [(2, "tuned")]
    assert {
        (r.resource_type, r.resource_name): r.error_code
        for r in resp.responses  # type: ignore[attr-defined]
    } == {(2, "tuned"): 0, (2, "orders"): 29, (4, "0"): 31, (8, "0"): 31}
    # AlterConfigs: all denied is answered without the handler
    old = ac.AlterConfigsRequest(
        resources=(
            ac.AlterConfigsResource(resource_type=4, resource_name="", configs=()),
        ),
        validate_only=False,
    )
    resp = authorize(rctx(svc, "alice", 33, 2), old, lambda r: pytest.fail("called"))
    assert isinstance(resp, ac.AlterConfigsResponse)
    assert [r.error_code for r in resp.responses] == [31]
    assert authorize(rctx(svc, "root", 33, 2), old, lambda r: "ok") == "ok"


def test_describing_broker_loggers_needs_the_cluster(svc: SecurityService) -> None:
    """DescribeConfigs on BROKER_LOGGER: DESCRIBE_CONFIGS (or DESCRIBE) on the
    cluster, else error 31 for that resource while a topic's is answered."""
    req = dc.DescribeConfigsRequest(
        resources=(
            dc.DescribeConfigsResource(
                resource_type=2, resource_name="orders", configuration_keys=None
            ),
            dc.DescribeConfigsResource(
                resource_type=8, resource_name="0", configuration_keys=None
            ),
        ),
    )
    seen: list[tuple[int, str]] = []

    def handler(r: object) -> object:
        assert isinstance(r, dc.DescribeConfigsRequest)
        seen.extend((x.resource_type, x.resource_name) for x in r.resources)
        return dc.DescribeConfigsResponse(
            throttle_time_ms=0,
            results=tuple(
                dc.DescribeConfigsResult(
                    error_code=0,
                    error_message=None,
                    resource_type=x.resource_type,
                    resource_name=x.resource_name,
                )
                for x in r.resources
            ),
        )

    resp = authorize(rctx(svc, "alice", 32, 4), req, handler)
    assert seen == [(2, "orders")]
    assert {
        (r.resource_type, r.resource_name): r.error_code
        for r in resp.results  # type: ignore[attr-defined]
    } == {(2, "orders"): 0, (8, "0"): 31}
    seen.clear()
    authorize(rctx(svc, "root", 32, 4), req, handler)
    assert seen == [(2, "orders"), (8, "0")]
