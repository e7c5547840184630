"""What etcd holds for a cluster, as typed values with a strict JSON form.

Every value stored under the cluster prefix (see :mod:`broker.cluster.keys`) is one
of these dataclasses encoded by :func:`encode` and read back by its ``decode``
classmethod; a value that does not decode raises :class:`BadRecord` (the reader logs
it and ignores the key, it never crashes a broker).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

NO_LEADER: Final = -1


class BadRecord(ValueError):
    """A stored value that is not what its key should hold."""


def _obj(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRecord(f"not JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadRecord("not a JSON object")
    return data


def _int(data: Mapping[str, Any], key: str) -> int:
    v = data.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRecord(f"{key!r} is not an integer")
    return v


def _str(data: Mapping[str, Any], key: str) -> str:
    v = data.get(key)
    if not isinstance(v, str):
        raise BadRecord(f"{key!r} is not a string")
    return v


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    v = data.get(key)
    if v is not None and not isinstance(v, str):
        raise BadRecord(f"{key!r} is not a string")
    return v


def _ints(data: Mapping[str, Any], key: str) -> tuple[int, ...]:
    v = data.get(key, [])
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in v
    ):
        raise BadRecord(f"{key!r} is not a list of integers")
    return tuple(v)


def _bool(data: Mapping[str, Any], key: str) -> bool:
    v = data.get(key, False)
    if not isinstance(v, bool):
        raise BadRecord(f"{key!r} is not a boolean")
    return v


def _assignment(data: Mapping[str, Any]) -> tuple[tuple[int, ...], ...] | None:
    """The optional ``assignment`` field: replicas per partition, or None."""
    raw = data.get("assignment")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRecord("'assignment' is not a list")
    return tuple(_ints({"r": r}, "r") for r in raw)


def _assignment_json(
    assignment: tuple[tuple[int, ...], ...] | None,
) -> list[list[int]] | None:
    return None if assignment is None else [list(r) for r in assignment]


def _str_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    v = data.get(key, {})
    if not isinstance(v, dict) or not all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items()
    ):
        raise BadRecord(f"{key!r} is not a map of strings")
    return dict(v)


def encode(value: Any) -> bytes:
    """The stored form of a model value (compact JSON, keys sorted)."""
    return json.dumps(value.to_json(), separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One advertised Kafka listener of a broker."""

    name: str
    host: str
    port: int
    security_protocol: str = "PLAINTEXT"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "security_protocol": self.security_protocol,
        }

    @classmethod
    def from_json(cls, data: Any) -> Endpoint:
        if not isinstance(data, dict):
            raise BadRecord("endpoint is not an object")
        return cls(
            name=_str(data, "name"),
            host=_str(data, "host"),
            port=_int(data, "port"),
            security_protocol=_str(data, "security_protocol"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerInfo:
    """A live broker's registration (``brokers/{id}``, bound to its session lease)."""

    node_id: int
    endpoints: tuple[Endpoint, ...]
    rack: str | None = None
    admin: str | None = None  # host:port of its admin API, if any
    started_ms: int = 0

    def endpoint(self, listener: str) -> Endpoint | None:
        """The endpoint of the listener with this name (Kafka answers a client with
        the addresses of the listener it connected to)."""
        for e in self.endpoints:
            if e.name == listener:
                return e
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "endpoints": [e.to_json() for e in self.endpoints],
            "rack": self.rack,
            "admin": self.admin,
            "started_ms": self.started_ms,
        }

    @classmethod
    def decode(cls, raw: bytes) -> BrokerInfo:
        data = _obj(raw)
        eps = data.get("endpoints")
        if not isinstance(eps, list):
            raise BadRecord("'endpoints' is not a list")
        return cls(
            node_id=_int(data, "node_id"),
            endpoints=tuple(Endpoint.from_json(e) for e in eps),
            rack=_opt_str(data, "rack"),
            admin=_opt_str(data, "admin"),
            started_ms=_int(data, "started_ms"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerInfo:
    """The elected controller (``controller``, bound to its session lease).

    ``epoch`` is the etcd create revision of the key: it only grows, and every
    controller write is guarded by it (a stale controller's write fails).
    """

    node_id: int
    epoch: int = 0  # filled from the key's create revision when read

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id}

    @classmethod
    def decode(cls, raw: bytes, *, create_revision: int) -> ControllerInfo:
        return cls(node_id=_int(_obj(raw), "node_id"), epoch=create_revision)


def decode_configs(raw: bytes) -> dict[str, str]:
    """A ``config/brokers/{scope}`` value: a JSON object of string values."""
    return _str_map({"configs": _obj(raw)}, "configs")


def encode_configs(values: Mapping[str, str]) -> bytes:
    """The stored form of a ``config/brokers/{scope}`` value."""
    return json.dumps(dict(values), separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicRecord:
    """A topic's identity and configuration (``topics/{name}``; controller-written).

    The replica assignment lives in each partition's state, not here: a
    reassignment changes one partition key with one compare-and-set.
    """

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    internal: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "topic_id": str(self.topic_id),
            "partitions": self.partitions,
            "configs": dict(self.configs),
            "internal": self.internal,
        }

    @classmethod
    def decode(cls, raw: bytes) -> TopicRecord:
        data = _obj(raw)
        try:
            tid = uuid.UUID(_str(data, "topic_id"))
        except ValueError as e:
            raise BadRecord(f"'topic_id' is not a UUID: {e}") from e
        return cls(
            name=_str(data, "name"),
            topic_id=tid,
            partitions=_int(data, "partitions"),
            configs=_str_map(data, "configs"),
            internal=_bool(data, "internal"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionRecord:
    """One partition's state (``partitions/{topic}/{index}``): the one key the
    controller writes with compare-and-set.

    ``replicas`` is the assignment (the first is the preferred leader); ``leader``
    is NO_LEADER while no replica can lead (the partition is offline).
    ``leader_epoch`` grows with every leader change; ``partition_epoch`` with every
    change of the record. ``adding``/``removing`` are the replicas a reassignment
    is adding and removing (KIP-455); empty when none is in progress.
    """

    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    partition_epoch: int = 0
    controller_epoch: int = 0  # the controller that wrote it
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    @property
    def online(self) -> bool:
        return self.leader != NO_LEADER

    def to_json(self) -> dict[str, Any]:
        return {
            "replicas": list(self.replicas),
            "leader": self.leader,
            "leader_epoch": self.leader_epoch,
            "isr": list(self.isr),
            "partition_epoch": self.partition_epoch,
            "controller_epoch": self.controller_epoch,
            "adding": list(self.adding),
            "removing": list(self.removing),
        }

    @classmethod
    def decode(cls, raw: bytes) -> PartitionRecord:
        data = _obj(raw)
        return cls(
            replicas=_ints(data, "replicas"),
            leader=_int(data, "leader"),
            leader_epoch=_int(data, "leader_epoch"),
            isr=_ints(data, "isr"),
            partition_epoch=_int(data, "partition_epoch"),
            controller_epoch=_int(data, "controller_epoch"),
            adding=_ints(data, "adding"),
            removing=_ints(data, "removing"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestError:
    """Why the controller refused a request: a Kafka error code and a message."""

    code: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_json(cls, data: Any) -> RequestError:
        if not isinstance(data, dict):
            raise BadRecord("error is not an object")
        return cls(code=_int(data, "code"), message=_str(data, "message"))


def _error(data: Mapping[str, Any]) -> RequestError | None:
    e = data.get("error")
    return None if e is None else RequestError.from_json(e)


def _error_json(error: RequestError | None) -> dict[str, Any] | None:
    return None if error is None else error.to_json()


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopicRequest:
    """``admin/create/{name}``: any broker asks the controller to create a topic.

    ``replication_factor`` -1 takes the cluster default; ``assignment`` (replicas per
    partition) is a manual assignment, None lets the controller place replicas. The
    controller deletes the key when it wrote the topic, or sets ``error``.
    """

    name: str
    partitions: int
    replication_factor: int = -1
    configs: Mapping[str, str] = field(default_factory=dict)
    assignment: tuple[tuple[int, ...], ...] | None = None
    topic_id: uuid.UUID | None = None  # a restored snapshot keeps its topic's id
    error: RequestError | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "configs": dict(self.configs),
            "assignment": _assignment_json(self.assignment),
            "topic_id": None if self.topic_id is None else str(self.topic_id),
            "error": _error_json(self.error),
        }

    @classmethod
    def decode(cls, raw: bytes) -> CreateTopicRequest:
        data = _obj(raw)
        tid = _opt_str(data, "topic_id")
        try:
            topic_id = None if tid is None else uuid.UUID(tid)
        except ValueError as e:
            raise BadRecord(f"'topic_id' is not a UUID: {e}") from e
        return cls(
            name=_str(data, "name"),
            partitions=_int(data, "partitions"),
            replication_factor=_int(data, "replication_factor"),
            configs=_str_map(data, "configs"),
            assignment=_assignment(data),
            topic_id=topic_id,
            error=_error(data),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsRequest:
    """``admin/partitions/{name}``: grow a topic to ``count`` partitions."""

    name: str
    count: int
    assignment: tuple[tuple[int, ...], ...] | None = None  # the new partitions only
    error: RequestError | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "assignment": _assignment_json(self.assignment),
            "error": _error_json(self.error),
        }

    @classmethod
    def decode(cls, raw: bytes) -> CreatePartitionsRequest:
        data = _obj(raw)
        return cls(
            name=_str(data, "name"),
            count=_int(data, "count"),
            assignment=_assignment(data),
            error=_error(data),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReassignRequest:
    """``admin/reassign/{topic}/{index}``: move a partition to ``replicas``
    (an empty tuple cancels a reassignment in progress)."""

    replicas: tuple[int, ...]
    error: RequestError | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "replicas": list(self.replicas),
            "error": _error_json(self.error),
        }

    @classmethod
    def decode(cls, raw: bytes) -> ReassignRequest:
        data = _obj(raw)
        return cls(replicas=_ints(data, "replicas"), error=_error(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectRequest:
    """``admin/elect/{topic}/{index}``: elect the preferred (first) replica, or
    (``unclean``) any live replica."""

    unclean: bool = False
    error: RequestError | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "unclean": self.unclean,
            "error": _error_json(self.error),
        }

    @classmethod
    def decode(cls, raw: bytes) -> ElectRequest:
        data = _obj(raw)
        return cls(unclean=_bool(data, "unclean"), error=_error(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownRequest:
    """``admin/shutdown/{id}``: a broker stopping asks the controller to move the
    leadership of its partitions away (Kafka's ControlledShutdown). The controller
    sets ``done`` with the partitions that could not move (no other live replica)."""

    node_id: int
    done: bool = False
    remaining: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "done": self.done, "remaining": self.remaining}

    @classmethod
    def decode(cls, raw: bytes) -> ShutdownRequest:
        data = _obj(raw)
        return cls(
            node_id=_int(data, "node_id"),
            done=_bool(data, "done"),
            remaining=_int(data, "remaining"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicRequest:
    """``admin/delete/{name}``: delete a topic. The request is an empty value; the
    controller deletes the key when the topic is gone, or sets ``error``."""

    error: RequestError | None = None

    def to_json(self) -> dict[str, Any]:
        return {"error": _error_json(self.error)}

    @classmethod
    def decode(cls, raw: bytes) -> DeleteTopicRequest:
        if not raw.strip():
            return cls()
        return cls(error=_error(_obj(raw)))
