"""The key layout under a cluster's prefix (``--cluster etcd://host:port/PREFIX``).

::

    PREFIX/cluster_id                   the cluster id (created once, by the first broker)
    PREFIX/brokers/{id}                 BrokerInfo, bound to the broker's session lease
    PREFIX/controller                   ControllerInfo, bound to the controller's lease;
                                        its create revision is the controller epoch
    PREFIX/topics/{name}                TopicRecord
    PREFIX/partitions/{name}/{index}    PartitionRecord (compare-and-set)
    PREFIX/config/brokers/{id}          a broker's dynamic configs (JSON object)
    PREFIX/config/brokers/<default>     the cluster-wide dynamic broker configs
    PREFIX/config/users/{name}          a user's SCRAM credentials (Kafka's
                                        /config/users/{name}; name URL-quoted)
    PREFIX/admin/create/{name}          CreateTopicRequest
    PREFIX/admin/partitions/{name}      CreatePartitionsRequest
    PREFIX/admin/delete/{name}          a topic deletion request (empty value)
    PREFIX/admin/reassign/{name}/{i}    ReassignRequest
    PREFIX/admin/elect/{name}/{i}       ElectRequest
    PREFIX/admin/shutdown/{id}          ShutdownRequest
    PREFIX/acls/{pattern}/{type}/{name} the ACLs of one resource pattern (Kafka's
                                        /kafka-acl/{type}/{name}; name URL-quoted)

Topic names are Kafka's (letters, digits, ``.``, ``_``, ``-``), so ``/`` never
occurs inside a name and a key splits unambiguously; ACL resource names (a group
may be called anything) and user names are URL-quoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one cluster (``prefix`` without a trailing slash)."""

    prefix: str

    @property
    def cluster_id(self) -> str:
        return f"{self.prefix}/cluster_id"

    @property
    def brokers(self) -> str:
        return f"{self.prefix}/brokers/"

    def broker(self, node_id: int) -> str:
        return f"{self.prefix}/brokers/{node_id}"

    @property
    def controller(self) -> str:
        return f"{self.prefix}/controller"

    @property
    def topics(self) -> str:
        return f"{self.prefix}/topics/"

    def topic(self, name: str) -> str:
        return f"{self.prefix}/topics/{name}"

    @property
    def partitions(self) -> str:
        return f"{self.prefix}/partitions/"

    def topic_partitions(self, name: str) -> str:
        return f"{self.prefix}/partitions/{name}/"

    def partition(self, name: str, index: int) -> str:
        return f"{self.prefix}/partitions/{name}/{index}"

    def broker_config(self, scope: str) -> str:
        """Dynamic broker configs: ``scope`` is a node id or ``<default>``."""
        return f"{self.prefix}/config/brokers/{scope}"

    @property
    def users(self) -> str:
        return f"{self.prefix}/config/users/"

    def user(self, name: str) -> str:
        """The key of one user's SCRAM credentials (any name: it is URL-quoted)."""
        return f"{self.prefix}/config/users/{quote(name, safe='')}"

    @property
    def admin(self) -> str:
        return f"{self.prefix}/admin/"

    def create(self, name: str) -> str:
        return f"{self.prefix}/admin/create/{name}"

    def grow(self, name: str) -> str:
        return f"{self.prefix}/admin/partitions/{name}"

    def delete(self, name: str) -> str:
        return f"{self.prefix}/admin/delete/{name}"

    def reassign(self, name: str, index: int) -> str:
        return f"{self.prefix}/admin/reassign/{name}/{index}"

    def elect(self, name: str, index: int) -> str:
        return f"{self.prefix}/admin/elect/{name}/{index}"

    def shutdown(self, node_id: int) -> str:
        return f"{self.prefix}/admin/shutdown/{node_id}"

    @property
    def acls(self) -> str:
        return f"{self.prefix}/acls/"

    def acl(self, pattern: str, resource_type: str, name: str) -> str:
        """The key of one resource pattern's ACLs (any name: it is URL-quoted)."""
        return f"{self.prefix}/acls/{pattern}/{resource_type}/{quote(name, safe='')}"

    def relative(self, key: str) -> list[str]:
        """The parts of ``key`` after the prefix (``["partitions", "t", "3"]``)."""
        if not key.startswith(self.prefix + "/"):
            return []
        return key[len(self.prefix) + 1 :].split("/")
