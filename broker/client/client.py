"""The CLI's Kafka client: bootstrap, Metadata, leader routing, Produce, Fetch, ListOffsets.

Built only on ``protocol/`` (codec, message schemas, record batches); no other Kafka
library is used at run time. Synchronous: a CLI command is a short sequence of
requests. Requests for a partition go to its leader as Metadata reports it; when the
advertised address of a single-broker cluster is unreachable from here (a container
advertising its own hostname), the bootstrap connection is used instead.

Versions: each request uses the highest version both sides speak, capped where a
newer version only replaces topic names with topic IDs (Produce 13, Fetch 13+), which
this client does not need.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Final

from broker.client.auth import Security
from broker.client.connection import UNREACHABLE_HINT, Connection, parse_address
from broker.client.errors import BrokerUnreachable, InvalidArgument, KafkaError
from broker.client.partitioner import Partitioner
from broker.client.types import (
    BrokerInfo,
    ClusterInfo,
    ConsumedRecord,
    PartitionFetch,
    PartitionInfo,
    ProduceResult,
    ProducerRecord,
    TopicInfo,
)
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from protocol.messages.list_offsets import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
)
from protocol.messages.metadata import (
    MetadataRequest,
    MetadataRequestTopic,
    MetadataResponse,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import Header, RecordInput, build_batch, iter_records
from protocol.records import Compression, iter_batches

EARLIEST: Final = -2
LATEST: Final = -1

_PRODUCE: Final = 0
_FETCH: Final = 1
_MAX_VERSION: Final = {_PRODUCE: 12, _FETCH: 12}
# Errors after which Metadata is refreshed and the request tried again (bounded).
_RETRIABLE: Final = frozenset(
    {
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.REQUEST_TIMED_OUT,
    }
)


class KafkaClient:
    """A connection pool over one cluster: one connection per broker, made on demand."""

    def __init__(
        self,
        brokers: str | Sequence[str],
        *,
        client_id: str = "ailurus-cli",
        timeout: float = 10.0,
        retry_for: float = 5.0,
        security: Security | None = None,
    ) -> None:
        if isinstance(brokers, str):
            brokers = [b for b in brokers.split(",") if b.strip()]
        if not brokers:
            raise InvalidArgument("no broker address given (--brokers host:port)")
        try:
            self.bootstrap_addresses = [parse_address(b) for b in brokers]
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self.client_id = client_id
        self.timeout = timeout
        self.retry_for = retry_for
        self.security = security or Security()
        self.partitioner = Partitioner()
        self._bootstrap: Connection | None = None
        self._by_node: dict[int, Connection] = {}
        self._brokers: dict[int, BrokerInfo] = {}
        self._topics: dict[str, TopicInfo] = {}
        self._controller_id = -1

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close every connection."""
        seen: set[int] = set()
        for conn in [self._bootstrap, *self._by_node.values()]:
            if conn is not None and id(conn) not in seen:
                seen.add(id(conn))
                conn.close()
        self._by_node.clear()
        self._bootstrap = None

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- connections ---------------------------------------------------------------

    def bootstrap(self) -> Connection:
        """A connection to the first reachable bootstrap address."""
        if self._bootstrap is not None and not self._bootstrap.closed:
            return self._bootstrap
        failures: list[BrokerUnreachable] = []
        for host, port in self.bootstrap_addresses:
            try:
                self._bootstrap = Connection(
                    host,
                    port,
                    client_id=self.client_id,
                    timeout=self.timeout,
                    security=self.security,
                )
            except BrokerUnreachable as exc:
                failures.append(exc)
                continue
            return self._bootstrap
        if len(failures) == 1:
            raise failures[0]
        tried = ", ".join(f.address for f in failures)
        raise BrokerUnreachable(tried, UNREACHABLE_HINT, "no address answered")

    def connection_for(self, node_id: int) -> Connection:
        """The connection to broker ``node_id`` (the bootstrap one if it is that broker)."""
        conn = self._by_node.get(node_id)
        if conn is not None and not conn.closed:
            return conn
        boot = self.bootstrap()
        info = self._brokers.get(node_id)
        if info is None or (info.host, info.port) == (boot.host, boot.port):
            conn = boot
        else:
            try:
                conn = Connection(
                    info.host,
                    info.port,
                    client_id=self.client_id,
                    timeout=self.timeout,
                    security=self.security,
                )
            except BrokerUnreachable:
                if len(self._brokers) > 1:
                    raise
                conn = boot  # one broker advertising an address we cannot reach
        self._by_node[node_id] = conn
        return conn

    def controller(self) -> Connection:
        """The connection for admin requests (the controller, else the bootstrap broker)."""
        if not self._brokers:
            self.metadata([])
        if self._controller_id in self._brokers:
            return self.connection_for(self._controller_id)
        return self.bootstrap()

    def version_for(self, conn: Connection, api_key: int) -> int:
        """The version of ``api_key`` to use on ``conn`` (capped, see the module doc)."""
        version = conn.version_for(api_key)
        return min(version, _MAX_VERSION.get(api_key, version))

    # -- metadata ------------------------------------------------------------------

    def metadata(
        self, topics: Sequence[str] | None = None, *, auto_create: bool = False
    ) -> ClusterInfo:
        """Metadata for ``topics`` (None: every topic); caches brokers and topics."""
        conn = self.bootstrap()
        request = MetadataRequest(
            topics=None
            if topics is None
            else tuple(MetadataRequestTopic(name=t) for t in topics),
            allow_auto_topic_creation=auto_create,
        )
        response = conn.request(request, MetadataResponse)
        if response.error_code:
            raise KafkaError(response.error_code, "Metadata")
        brokers = tuple(
            BrokerInfo(node_id=b.node_id, host=b.host, port=b.port, rack=b.rack)
            for b in response.brokers
        )
        infos = tuple(
            TopicInfo(
                name=t.name or "",
                topic_id=bytes(t.topic_id),
                internal=t.is_internal,
                error_code=t.error_code,
                partitions=tuple(
                    sorted(
                        (
                            PartitionInfo(
                                partition=p.partition_index,
                                leader=p.leader_id,
                                leader_epoch=p.leader_epoch,
                                replicas=tuple(p.replica_nodes),
                                isr=tuple(p.isr_nodes),
                                offline_replicas=tuple(p.offline_replicas),
                                error_code=p.error_code,
                            )
                            for p in t.partitions
                        ),
                        key=lambda p: p.partition,
                    )
                ),
            )
            for t in response.topics
        )
        self._brokers = {b.node_id: b for b in brokers}
        self._controller_id = response.controller_id
        for info in infos:
            if info.error_code == 0:
                self._topics[info.name] = info
            else:
                self._topics.pop(info.name, None)
        return ClusterInfo(
            cluster_id=response.cluster_id,
            controller_id=response.controller_id,
            brokers=brokers,
            topics=tuple(sorted(infos, key=lambda t: t.name)),
        )

    def topic(
        self, name: str, *, auto_create: bool = False, refresh: bool = False
    ) -> TopicInfo:
        """Metadata of one topic, waiting (bounded) for a new topic's leaders.

        Raises:
            KafkaError: the topic does not exist (UNKNOWN_TOPIC_OR_PARTITION) or is
                not usable.
        """
        cached = self._topics.get(name)
        if cached is not None and not refresh:
            return cached
        deadline = time.monotonic() + self.retry_for
        while True:
            info = next(
                (
                    t
                    for t in self.metadata([name], auto_create=auto_create).topics
                    if t.name == name
                ),
                None,
            )
            code = (
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if info is None
                else info.error_code
            )
            if (
                info is not None
                and code == 0
                and info.partitions
                and all(p.leader >= 0 for p in info.partitions)
            ):
                return info
            retriable = code in (ErrorCode.LEADER_NOT_AVAILABLE, 0) or (
                auto_create and code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            )
            if not retriable or time.monotonic() >= deadline:
                if code == 0:
                    code = ErrorCode.LEADER_NOT_AVAILABLE
                raise KafkaError(code, f"topic {name!r}")
            time.sleep(0.1)

    def leader_of(self, topic: str, partition: int) -> Connection:
        """The connection to the leader of ``topic``/``partition``."""
        info = self.topic(topic)
        for p in info.partitions:
            if p.partition == partition:
                return self.connection_for(p.leader)
        raise KafkaError(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            f"topic {topic!r} has no partition {partition} "
            f"(it has {len(info.partitions)})",
        )

    def _by_leader(
        self, topic: str, partitions: Iterable[int]
    ) -> dict[int, tuple[Connection, list[int]]]:
        groups: dict[int, tuple[Connection, list[int]]] = {}
        for partition in partitions:
            conn = self.leader_of(topic, partition)
            groups.setdefault(id(conn), (conn, []))[1].append(partition)
        return groups

    # -- produce -------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        records: Sequence[ProducerRecord],
        *,
        acks: int = -1,
        compression: Compression = Compression.NONE,
        timeout_ms: int = 30_000,
        auto_create: bool = True,
    ) -> list[ProduceResult]:
        """Produce ``records`` to ``topic``: one batch per partition, sent to its leader.

        Returns one result per record, in input order (offset -1 when ``acks`` is 0).
        """
        if acks not in (-1, 0, 1):
            raise InvalidArgument(f"acks must be -1 (all), 0 or 1, not {acks}")
        info = self.topic(topic, auto_create=auto_create)
        count = len(info.partitions)
        by_partition: dict[int, list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            if record.partition is not None:
                if not 0 <= record.partition < count:
                    raise KafkaError(
                        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        f"topic {topic!r} has no partition {record.partition} (it has {count})",
                    )
                partition = record.partition
            else:
                partition = self.partitioner.partition(topic, record.key, count)
            by_partition[partition].append(index)
        now = int(time.time() * 1000)
        batches = {
            partition: build_batch(
                [
                    RecordInput(
                        key=records[i].key,
                        value=records[i].value,
                        headers=tuple(
                            Header(key=k, value=v) for k, v in records[i].headers
                        ),
                        timestamp=now
                        if records[i].timestamp is None
                        else records[i].timestamp,
                    )
                    for i in indexes
                ],
                compression=compression,
            )
            for partition, indexes in by_partition.items()
        }
        results: list[ProduceResult | None] = [None] * len(records)
        pending = sorted(batches)
        deadline = time.monotonic() + self.retry_for
        while pending:
            failed: dict[int, tuple[int, str | None]] = {}
            for conn, partitions in self._by_leader(topic, pending).values():
                request = ProduceRequest(
                    transactional_id=None,
                    acks=acks,
                    timeout_ms=timeout_ms,
                    topic_data=(
                        TopicProduceData(
                            name=topic,
                            topic_id=info.topic_id,
                            partition_data=tuple(
                                PartitionProduceData(index=p, records=batches[p])
                                for p in partitions
                            ),
                        ),
                    ),
                )
                version = self.version_for(conn, _PRODUCE)
                if acks == 0:
                    conn.send_only(request, version=version)
                    for p in partitions:
                        for i in by_partition[p]:
                            results[i] = ProduceResult(
                                topic=topic, partition=p, offset=-1
                            )
                    continue
                response = conn.request(request, ProduceResponse, version=version)
                for t in response.responses:
                    for pr in t.partition_responses:
                        if pr.error_code in _RETRIABLE:
                            failed[pr.index] = (pr.error_code, pr.error_message)
                            continue
                        if pr.error_code:
                            raise KafkaError(
                                pr.error_code,
                                f"produce to {topic}/{pr.index}",
                                pr.error_message,
                            )
                        for delta, i in enumerate(by_partition[pr.index]):
                            results[i] = ProduceResult(
                                topic=topic,
                                partition=pr.index,
                                offset=pr.base_offset + delta,
                            )
            if failed and time.monotonic() >= deadline:
                partition, (code, message) = min(failed.items())
                raise KafkaError(code, f"produce to {topic}/{partition}", message)
            if failed:
                # Leadership moved or the topic is still being created: refresh, retry.
                time.sleep(0.1)
                self.topic(topic, refresh=True)
            pending = sorted(failed)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise KafkaError(
                ErrorCode.UNKNOWN_SERVER_ERROR,
                f"produce to {topic}: the broker did not acknowledge {len(missing)} record(s)",
            )
        return [r for r in results if r is not None]

    # -- offsets -------------------------------------------------------------------

    def list_offsets(
        self,
        topic: str,
        partitions: Iterable[int],
        timestamp: int,
        *,
        isolation_level: int = 0,
    ) -> dict[int, int]:
        """Offsets by partition for ``timestamp`` (EARLIEST, LATEST, or ms since epoch).

        A timestamp later than every record gives -1 for that partition (as Kafka).
        ``isolation_level`` 1 (read_committed, ListOffsets v2+) answers LATEST with
        the last stable offset: the first offset of the oldest open transaction.
        """
        out: dict[int, int] = {}
        for conn, group in self._by_leader(topic, partitions).values():
            request = ListOffsetsRequest(
                replica_id=-1,
                isolation_level=isolation_level,
                topics=(
                    ListOffsetsTopic(
                        name=topic,
                        partitions=tuple(
                            ListOffsetsPartition(partition_index=p, timestamp=timestamp)
                            for p in group
                        ),
                    ),
                ),
            )
            response = conn.request(request, ListOffsetsResponse)
            for t in response.topics:
                for p in t.partitions:
                    if p.error_code:
                        raise KafkaError(
                            p.error_code, f"list offsets of {topic}/{p.partition_index}"
                        )
                    offset = p.offset
                    if conn.version_for(2) == 0:
                        offset = p.old_style_offsets[0] if p.old_style_offsets else -1
                    out[p.partition_index] = offset
        return out

    # -- fetch ---------------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        offsets: Mapping[int, int],
        *,
        max_wait_ms: int = 500,
        min_bytes: int = 1,
        max_bytes: int = 16 * 1024 * 1024,
        partition_max_bytes: int = 4 * 1024 * 1024,
    ) -> dict[int, PartitionFetch]:
        """Fetch once from each partition in ``offsets`` (partition -> next offset)."""
        out: dict[int, PartitionFetch] = {}
        for conn, group in self._by_leader(topic, sorted(offsets)).values():
            info = self.topic(topic)
            request = FetchRequest(
                replica_id=-1,
                max_wait_ms=max_wait_ms,
                min_bytes=min_bytes,
                max_bytes=max_bytes,
                isolation_level=0,
                session_id=0,
                session_epoch=-1,
                topics=(
                    FetchTopic(
                        topic=topic,
                        topic_id=info.topic_id,
                        partitions=tuple(
                            FetchPartition(
                                partition=p,
                                fetch_offset=offsets[p],
                                partition_max_bytes=partition_max_bytes,
                            )
                            for p in group
                        ),
                    ),
                ),
            )
            timeout = conn.timeout
            conn.timeout = max(timeout, max_wait_ms / 1000 + timeout)
            try:
                response = conn.request(
                    request, FetchResponse, version=self.version_for(conn, _FETCH)
                )
            finally:
                conn.timeout = timeout
            if response.error_code:
                raise KafkaError(response.error_code, f"fetch from {topic}")
            for t in response.responses:
                for p in t.partitions:
                    records, next_offset = _decode_records(
                        topic, p.partition_index, p.records, offsets[p.partition_index]
                    )
                    out[p.partition_index] = PartitionFetch(
                        partition=p.partition_index,
                        error_code=p.error_code,
                        high_watermark=p.high_watermark,
                        log_start_offset=p.log_start_offset,
                        records=records,
                        next_offset=next_offset,
                    )
        return out


def _decode_records(
    topic: str,
    partition: int,
    data: bytes
    | bytearray
    | memoryview
    | tuple[bytes | bytearray | memoryview, ...]
    | None,
    fetch_offset: int,
) -> tuple[tuple[ConsumedRecord, ...], int]:
    """The records at or after ``fetch_offset`` in a Fetch response's record set.

    Returns them with the offset to fetch next: after the last complete batch, so
    control batches (transaction markers) and compacted gaps are stepped over.
    """
    if data is None:
        return (), fetch_offset
    buf = b"".join(data) if isinstance(data, tuple) else data
    out: list[ConsumedRecord] = []
    next_offset = fetch_offset
    for pos, header in iter_batches(buf):
        if header.last_offset < fetch_offset:
            continue
        next_offset = max(next_offset, header.last_offset + 1)
        if header.is_control:
            continue
        out.extend(
            ConsumedRecord(
                topic=topic,
                partition=partition,
                offset=r.offset,
                timestamp=r.timestamp,
                key=r.key,
                value=r.value,
                headers=tuple((h.key, h.value) for h in r.headers),
            )
            for r in iter_records(buf, pos)
            if r.offset >= fetch_offset
        )
    return tuple(out), next_offset
