"""The Kafka handlers in cluster mode, over an in-memory cluster (no etcd):
Metadata and DescribeCluster from the cache, coordinators by the offsets
partition's leader, leader and epoch checks, and topic administration, elections
and reassignments through the controller's requests. The single-node answers of
the new APIs are checked at the end."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from broker.cluster.model import PartitionRecord
from broker.cluster.view import OFFSETS_TOPIC, offsets_partition
from broker.config import resolve
from broker.net.dispatch import load_handlers
from broker.server import open_context
from protocol.error_codes import ErrorCode
from protocol.messages.alter_partition_reassignments import (
    AlterPartitionReassignmentsRequest,
    AlterPartitionReassignmentsResponse,
    ReassignablePartition,
    ReassignableTopic,
)
from protocol.messages.create_partitions import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreatePartitionsTopic,
)
from protocol.messages.create_topics import (
    CreatableTopic,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.delete_topics import (
    DeleteTopicsRequest,
    DeleteTopicsResponse,
)
from protocol.messages.describe_cluster import (
    DescribeClusterRequest,
    DescribeClusterResponse,
)
from protocol.messages.describe_groups import (
    DescribeGroupsRequest,
    DescribeGroupsResponse,
)
from protocol.messages.elect_leaders import (
    ElectLeadersRequest,
    ElectLeadersResponse,
    TopicPartitions,
)
from protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from protocol.messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from protocol.messages.list_offsets import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
)
from protocol.messages.list_partition_reassignments import (
    ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
)
from protocol.messages.metadata import (
    MetadataRequest,
    MetadataRequestTopic,
    MetadataResponse,
)
from protocol.messages.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
    OffsetCommitResponse,
)
from protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchResponse,
)
from protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse
from tests.cluster.cluster_fake import (
    NODE,
    FakeCluster,
    call,
    cluster_config,
    groups_loaded,
    running,
    settled,
)


def reassign_request(
    topic: str, targets: dict[int, tuple[int, ...] | None]
) -> AlterPartitionReassignmentsRequest:
    """Move each partition of ``topic`` to its replicas (None cancels)."""
    return AlterPartitionReassignmentsRequest(
        topics=(
            ReassignableTopic(
                name=topic,
                partitions=tuple(
                    ReassignablePartition(partition_index=i, replicas=r)
                    for i, r in targets.items()
                ),
            ),
        )
    )


@pytest.mark.anyio
async def test_metadata_and_describe_cluster_answer_from_the_cache(
    tmp_path: Path,
) -> None:
    """Metadata lists the live brokers at their endpoint of the client's listener
    (not those without it), the controller, every topic with its leaders, epochs,
    replicas, ISR and offline replicas, LEADER_NOT_AVAILABLE for an offline
    partition and the offsets topic as internal; DescribeCluster the same brokers."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    cluster.add_broker(3, listener="INTERNAL")
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[2, NODE], [4, NODE]])
        cluster.set_partition(
            "t",
            1,
            PartitionRecord(replicas=(4, NODE), leader=-1, leader_epoch=7, isr=(4,)),
        )
        cluster.move_leader("t", 0, NODE)
        cluster.add_topic(OFFSETS_TOPIC, [[NODE]], internal=True)
        await settled(ctx, cluster)

        resp = await call(ctx, 3, 12, MetadataRequest(topics=None))
        assert isinstance(resp, MetadataResponse)
        assert [(b.node_id, b.host, b.port, b.rack) for b in resp.brokers] == [
            (NODE, "broker-1", 9001, "rack-1"),
            (2, "broker-2", 9002, "rack-0"),
        ]
        assert resp.controller_id == NODE
        assert resp.cluster_id == "test-cluster"
        topics = {t.name: t for t in resp.topics}
        assert topics[OFFSETS_TOPIC].is_internal
        assert not topics["t"].is_internal
        assert topics["t"].topic_id == cluster.cache.topic("t").topic_id.bytes  # type: ignore[union-attr]
        p0, p1 = topics["t"].partitions
        assert (p0.error_code, p0.leader_id, p0.leader_epoch) == (0, NODE, 1)
        assert (p0.replica_nodes, p0.isr_nodes, p0.offline_replicas) == (
            (2, NODE),
            (2, NODE),
            (),
        )
        assert p1.error_code == ErrorCode.LEADER_NOT_AVAILABLE
        assert (p1.leader_id, p1.leader_epoch, p1.offline_replicas) == (-1, 7, (4,))

        named = await call(
            ctx, 3, 12, MetadataRequest(topics=(MetadataRequestTopic(name="t"),))
        )
        assert isinstance(named, MetadataResponse)
        assert [t.name for t in named.topics] == ["t"]

        described = await call(ctx, 60, 1, DescribeClusterRequest(endpoint_type=1))
        assert isinstance(described, DescribeClusterResponse)
        assert described.controller_id == NODE
        assert [(b.broker_id, b.host, b.port) for b in described.brokers] == [
            (NODE, "broker-1", 9001),
            (2, "broker-2", 9002),
        ]


@pytest.mark.anyio
async def test_coordinator_is_the_offsets_partition_leader(tmp_path: Path) -> None:
    """FindCoordinator answers the leader of the group's offsets partition (at its
    endpoint), COORDINATOR_NOT_AVAILABLE while it has none; group APIs sent to
    another broker get NOT_COORDINATOR; once this broker leads that partition they
    get COORDINATOR_LOAD_IN_PROGRESS until its offsets are loaded, then reach the
    group coordinator here."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with (
        running(cluster_config(tmp_path), cluster, groups=False) as ctx,
        anyio.create_task_group() as tg,
    ):
        cluster.add_topic(OFFSETS_TOPIC, [[2, NODE]] * 4, internal=True)
        p = offsets_partition("g", 4)
        await settled(ctx, cluster)

        found = await call(ctx, 10, 3, FindCoordinatorRequest(key="g", key_type=0))
        assert isinstance(found, FindCoordinatorResponse)
        assert (found.error_code, found.node_id, found.host, found.port) == (
            0,
            2,
            "broker-2",
            9002,
        )
        beat = HeartbeatRequest(group_id="g", generation_id=1, member_id="m")
        refused = await call(ctx, 12, 4, beat)
        assert isinstance(refused, HeartbeatResponse)
        assert refused.error_code == ErrorCode.NOT_COORDINATOR

        cluster.move_leader(OFFSETS_TOPIC, p, NODE)
        batched = await call(
            ctx, 10, 4, FindCoordinatorRequest(key_type=0, coordinator_keys=("g",))
        )
        assert isinstance(batched, FindCoordinatorResponse)
        assert batched.coordinators[0].node_id == NODE
        await settled(ctx, cluster)
        loading = await call(ctx, 12, 4, beat)
        assert isinstance(loading, HeartbeatResponse)
        assert loading.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        tg.start_soon(ctx.groups.run)
        await groups_loaded(ctx, "g")
        here = await call(ctx, 12, 4, beat)
        assert isinstance(here, HeartbeatResponse)
        assert here.error_code == ErrorCode.UNKNOWN_MEMBER_ID

        cluster.set_partition(
            OFFSETS_TOPIC,
            p,
            PartitionRecord(replicas=(2,), leader=-1, leader_epoch=5, isr=(2,)),
        )
        gone = await call(ctx, 10, 3, FindCoordinatorRequest(key="g", key_type=0))
        assert isinstance(gone, FindCoordinatorResponse)
        assert gone.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_list_offsets_applies_the_leader_and_epoch_rules(tmp_path: Path) -> None:
    """ListOffsets answers FENCED_LEADER_EPOCH for an older current_leader_epoch,
    UNKNOWN_LEADER_EPOCH for a newer one, the offset for the current one or none,
    and NOT_LEADER_OR_FOLLOWER once another broker leads."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[NODE, 2]])
        for _ in range(5):
            cluster.move_leader("t", 0, NODE)  # epoch 5
        await settled(ctx, cluster)

        async def code(epoch: int) -> int:
            resp = await call(
                ctx,
                2,
                7,
                ListOffsetsRequest(
                    replica_id=-1,
                    topics=(
                        ListOffsetsTopic(
                            name="t",
                            partitions=(
                                ListOffsetsPartition(
                                    partition_index=0,
                                    current_leader_epoch=epoch,
                                    timestamp=-1,
                                ),
                            ),
                        ),
                    ),
                ),
            )
            assert isinstance(resp, ListOffsetsResponse)
            return resp.topics[0].partitions[0].error_code

        assert await code(4) == ErrorCode.FENCED_LEADER_EPOCH
        assert await code(6) == ErrorCode.UNKNOWN_LEADER_EPOCH
        assert await code(5) == ErrorCode.NONE
        assert await code(-1) == ErrorCode.NONE
        cluster.move_leader("t", 0, 2)
        assert await code(6) == ErrorCode.NOT_LEADER_OR_FOLLOWER


@pytest.mark.anyio
async def test_topic_administration_goes_through_the_controller(tmp_path: Path) -> None:
    """CreateTopics, CreatePartitions, DeleteTopics and Metadata's auto-creation ask
    the controller, answer with its refusals' codes, and return once this broker's
    local topic matches."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        created = await call(
            ctx,
            19,
            7,
            CreateTopicsRequest(
                topics=(
                    CreatableTopic(name="a", num_partitions=2, replication_factor=2),
                    CreatableTopic(name="b", num_partitions=1, replication_factor=3),
                )
            ),
        )
        assert isinstance(created, CreateTopicsResponse)
        a, b = created.topics
        assert (a.error_code, a.num_partitions, a.replication_factor) == (0, 2, 2)
        meta = ctx.topics.find("a")
        assert meta is not None
        assert a.topic_id == meta.topic_id == cluster.cache.topic("a").topic_id.bytes  # type: ignore[union-attr]
        assert b.error_code == ErrorCode.INVALID_REPLICATION_FACTOR

        again = await call(
            ctx,
            19,
            7,
            CreateTopicsRequest(
                topics=(
                    CreatableTopic(name="a", num_partitions=1, replication_factor=-1),
                )
            ),
        )
        assert isinstance(again, CreateTopicsResponse)
        assert again.topics[0].error_code == ErrorCode.TOPIC_ALREADY_EXISTS

        grown = await call(
            ctx,
            37,
            3,
            CreatePartitionsRequest(
                topics=(CreatePartitionsTopic(name="a", count=3, assignments=None),),
                timeout_ms=1000,
            ),
        )
        assert isinstance(grown, CreatePartitionsResponse)
        assert grown.results[0].error_code == ErrorCode.NONE
        meta = ctx.topics.find("a")
        assert meta is not None
        assert meta.partition_count == 3

        auto = await call(
            ctx, 3, 12, MetadataRequest(topics=(MetadataRequestTopic(name="auto"),))
        )
        assert isinstance(auto, MetadataResponse)
        assert auto.topics[0].error_code == ErrorCode.NONE
        assert auto.topics[0].partitions[0].leader_id in (NODE, 2)
        assert ctx.topics.find("auto") is not None

        deleted = await call(ctx, 20, 5, DeleteTopicsRequest(topic_names=("a",)))
        assert isinstance(deleted, DeleteTopicsResponse)
        assert deleted.responses[0].error_code == ErrorCode.NONE
        assert ctx.topics.find("a") is None
        assert cluster.cache.topic("a") is None


@pytest.mark.anyio
async def test_elections_and_reassignments_go_through_the_controller(
    tmp_path: Path,
) -> None:
    """ElectLeaders moves leadership back to the preferred replica (then
    ELECTION_NOT_NEEDED); AlterPartitionReassignments starts a reassignment that
    ListPartitionReassignments shows with its adding and removing replicas."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2, 3))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[NODE, 2]])
        cluster.move_leader("t", 0, 2)
        await settled(ctx, cluster)
        elect = ElectLeadersRequest(
            election_type=0,
            topic_partitions=(TopicPartitions(topic="t", partitions=(0,)),),
        )
        first = await call(ctx, 43, 2, elect)
        assert isinstance(first, ElectLeadersResponse)
        assert first.replica_election_results[0].partition_result[0].error_code == 0
        assert cluster.cache.partition("t", 0).leader == NODE  # type: ignore[union-attr]
        second = await call(ctx, 43, 2, elect)
        assert isinstance(second, ElectLeadersResponse)
        result = second.replica_election_results[0].partition_result[0]
        assert result.error_code == ErrorCode.ELECTION_NOT_NEEDED

        altered = await call(
            ctx,
            45,
            0,
            reassign_request("t", {0: (NODE, 3), 9: (NODE,)}),
        )
        assert isinstance(altered, AlterPartitionReassignmentsResponse)
        codes = {
            p.partition_index: p.error_code for p in altered.responses[0].partitions
        }
        assert codes == {0: 0, 9: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}

        listed = await call(ctx, 46, 0, ListPartitionReassignmentsRequest(topics=None))
        assert isinstance(listed, ListPartitionReassignmentsResponse)
        [ongoing] = listed.topics[0].partitions
        assert (
            ongoing.replicas,
            ongoing.adding_replicas,
            ongoing.removing_replicas,
        ) == (
            (NODE, 3, 2),
            (3,),
            (2,),
        )


@pytest.mark.anyio
async def test_a_single_node_answers_the_cluster_apis_alone(tmp_path: Path) -> None:
    """On one node ElectLeaders answers ELECTION_NOT_NEEDED, a reassignment to this
    node alone is accepted and any other is INVALID_REPLICA_ASSIGNMENT (a
    cancellation NO_REASSIGNMENT_IN_PROGRESS), and none is ever listed."""
    load_handlers()
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    node = config.node_id
    async with open_context(config) as ctx:
        ctx.topics.logs.create_topic("t", 1)
        elected = await call(
            ctx,
            43,
            1,
            ElectLeadersRequest(
                election_type=0,
                topic_partitions=(TopicPartitions(topic="t", partitions=(0, 1)),),
            ),
        )
        assert isinstance(elected, ElectLeadersResponse)
        codes = {
            r.partition_id: r.error_code
            for r in elected.replica_election_results[0].partition_result
        }
        assert codes == {
            0: ErrorCode.ELECTION_NOT_NEEDED,
            1: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        }

        async def reassign(replicas: tuple[int, ...] | None) -> int:
            resp = await call(
                ctx,
                45,
                0,
                reassign_request("t", {0: replicas}),
            )
            assert isinstance(resp, AlterPartitionReassignmentsResponse)
            return resp.responses[0].partitions[0].error_code

        assert await reassign((node,)) == ErrorCode.NONE
        assert await reassign((node + 1,)) == ErrorCode.INVALID_REPLICA_ASSIGNMENT
        assert await reassign(None) == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
        listed = await call(ctx, 46, 0, ListPartitionReassignmentsRequest(topics=None))
        assert isinstance(listed, ListPartitionReassignmentsResponse)
        assert listed.topics == ()


@pytest.mark.anyio
async def test_every_group_api_answers_not_coordinator_on_another_broker(
    tmp_path: Path,
) -> None:
    """JoinGroup, SyncGroup, LeaveGroup, OffsetCommit, OffsetFetch (old and
    batched), DescribeGroups and DeleteGroups of a group another broker coordinates
    answer NOT_COORDINATOR and leave this broker's group state alone."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic(OFFSETS_TOPIC, [[2]], internal=True)  # broker 2 leads
        await settled(ctx, cluster)
        nc = ErrorCode.NOT_COORDINATOR

        join = await call(
            ctx,
            11,
            9,
            JoinGroupRequest(
                group_id="g",
                session_timeout_ms=10_000,
                member_id="",
                protocol_type="consumer",
            ),
        )
        assert isinstance(join, JoinGroupResponse)
        assert join.error_code == nc
        sync = await call(
            ctx, 14, 5, SyncGroupRequest(group_id="g", generation_id=1, member_id="m")
        )
        assert isinstance(sync, SyncGroupResponse)
        assert sync.error_code == nc
        leave = await call(ctx, 13, 1, LeaveGroupRequest(group_id="g", member_id="m"))
        assert isinstance(leave, LeaveGroupResponse)
        assert leave.error_code == nc
        commit = await call(
            ctx,
            8,
            8,
            OffsetCommitRequest(
                group_id="g",
                topics=(
                    OffsetCommitRequestTopic(
                        name="t",
                        partitions=(
                            OffsetCommitRequestPartition(
                                partition_index=0, committed_offset=5
                            ),
                        ),
                    ),
                ),
            ),
        )
        assert isinstance(commit, OffsetCommitResponse)
        assert commit.topics[0].partitions[0].error_code == nc
        old = await call(
            ctx,
            9,
            7,
            OffsetFetchRequest(
                group_id="g",
                topics=(OffsetFetchRequestTopic(name="t", partition_indexes=(0,)),),
            ),
        )
        assert isinstance(old, OffsetFetchResponse)
        assert old.error_code == nc
        batched = await call(
            ctx,
            9,
            8,
            OffsetFetchRequest(groups=(OffsetFetchRequestGroup(group_id="g"),)),
        )
        assert isinstance(batched, OffsetFetchResponse)
        assert batched.groups[0].error_code == nc
        described = await call(ctx, 15, 5, DescribeGroupsRequest(groups=("g",)))
        assert isinstance(described, DescribeGroupsResponse)
        assert described.groups[0].error_code == nc
        deleted = await call(ctx, 42, 2, DeleteGroupsRequest(groups_names=("g",)))
        assert isinstance(deleted, DeleteGroupsResponse)
        assert deleted.results[0].error_code == nc
        assert ctx.groups.list_groups() == []
        assert ctx.groups.fetch_offsets("g", [("t", 0)])[0].offset == -1
