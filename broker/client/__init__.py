"""A small synchronous Kafka client for the ``ailurus`` CLI, built only on ``protocol/``.

Public API::

    from broker.client import KafkaClient, ProducerRecord, EARLIEST, LATEST
    with KafkaClient("127.0.0.1:9092") as client:
        client.produce("t", [ProducerRecord(key=b"k", value=b"v")])
        client.fetch("t", {0: 0})

Topic administration lives in :mod:`broker.client.admin`, consumer groups in
:mod:`broker.client.groups`, offset specs and the consume loop in
:mod:`broker.client.consumer`. Errors are :mod:`broker.client.errors` classes.
"""

from broker.client.client import EARLIEST, LATEST, KafkaClient
from broker.client.errors import (
    BrokerUnreachable,
    ClientError,
    ClientTimeout,
    InvalidArgument,
    KafkaError,
    UnsupportedApi,
)
from broker.client.types import (
    BrokerInfo,
    ClusterInfo,
    ConsumedRecord,
    PartitionInfo,
    ProduceResult,
    ProducerRecord,
    TopicInfo,
)

__all__ = [
    "EARLIEST",
    "LATEST",
    "BrokerInfo",
    "BrokerUnreachable",
    "ClientError",
    "ClientTimeout",
    "ClusterInfo",
    "ConsumedRecord",
    "InvalidArgument",
    "KafkaClient",
    "KafkaError",
    "PartitionInfo",
    "ProduceResult",
    "ProducerRecord",
    "TopicInfo",
    "UnsupportedApi",
]
