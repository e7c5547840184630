"""Checks the message schemas (topic admin, configs, SASL, producer ids) against kio.

For every class declared and every version kio generates, the fields present in that
version must match kio's dataclass fields: names in order (``_ms`` stripped, as kio
drops it), wire types, tags, nullability and Kafka's non-zero defaults, recursing
into nested structures. Versions kio lacks (Kafka 4 dropped them: CreateTopics v0–1,
DeleteTopics v0, DescribeConfigs v0, OffsetForLeaderEpoch v0–1) are checked against
field lists transcribed by hand from the Kafka 3.x JSON definitions. Kafka's own JSON
definitions (the copies kafka-python 3 ships, for the versions Kafka 4 keeps) are
checked attribute by attribute too: version ranges, nullable versions, tags and
tagged versions, and defaults.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.schema import VersionRange, field_specs, message_spec
from tests.protocol._kio_compare import KioOracle, default, present

# module name -> (api key, request class, response class, required low, high)
MODULES: dict[str, tuple[int, str, str, int, int]] = {
    "init_producer_id": (22, "InitProducerIdRequest", "InitProducerIdResponse", 0, 5),
    "add_partitions_to_txn": (
        24,
        "AddPartitionsToTxnRequest",
        "AddPartitionsToTxnResponse",
        0,
        5,
    ),
    "add_offsets_to_txn": (
        25,
        "AddOffsetsToTxnRequest",
        "AddOffsetsToTxnResponse",
        0,
        4,
    ),
    "end_txn": (26, "EndTxnRequest", "EndTxnResponse", 0, 5),
    "create_topics": (19, "CreateTopicsRequest", "CreateTopicsResponse", 0, 7),
    "delete_topics": (20, "DeleteTopicsRequest", "DeleteTopicsResponse", 0, 6),
    "create_partitions": (
        37,
        "CreatePartitionsRequest",
        "CreatePartitionsResponse",
        0,
        3,
    ),
    "delete_records": (21, "DeleteRecordsRequest", "DeleteRecordsResponse", 0, 2),
    "write_txn_markers": (
        27,
        "WriteTxnMarkersRequest",
        "WriteTxnMarkersResponse",
        0,
        2,
    ),
    "txn_offset_commit": (
        28,
        "TxnOffsetCommitRequest",
        "TxnOffsetCommitResponse",
        0,
        5,
    ),
    "describe_configs": (
        32,
        "DescribeConfigsRequest",
        "DescribeConfigsResponse",
        0,
        4,
    ),
    "offset_for_leader_epoch": (
        23,
        "OffsetForLeaderEpochRequest",
        "OffsetForLeaderEpochResponse",
        0,
        4,
    ),
    "describe_cluster": (
        60,
        "DescribeClusterRequest",
        "DescribeClusterResponse",
        0,
        1,
    ),
    "describe_groups": (15, "DescribeGroupsRequest", "DescribeGroupsResponse", 0, 5),
    "delete_groups": (42, "DeleteGroupsRequest", "DeleteGroupsResponse", 0, 2),
    "sasl_handshake": (17, "SaslHandshakeRequest", "SaslHandshakeResponse", 0, 1),
    "sasl_authenticate": (
        36,
        "SaslAuthenticateRequest",
        "SaslAuthenticateResponse",
        0,
        2,
    ),
    "alter_configs": (33, "AlterConfigsRequest", "AlterConfigsResponse", 0, 2),
    "incremental_alter_configs": (
        44,
        "IncrementalAlterConfigsRequest",
        "IncrementalAlterConfigsResponse",
        0,
        1,
    ),
    "describe_acls": (29, "DescribeAclsRequest", "DescribeAclsResponse", 0, 3),
    "create_acls": (30, "CreateAclsRequest", "CreateAclsResponse", 0, 3),
    "delete_acls": (31, "DeleteAclsRequest", "DeleteAclsResponse", 0, 3),
}

# Versions kio lacks, transcribed from Kafka 3.x's JSON: each field is its name
# ("?" suffix when nullable in that version) or (name, nested fields).
Shape = list["str | tuple[str, Shape]"]
_CREATABLE_TOPIC: Shape = [
    "name",
    "num_partitions",
    "replication_factor",
    ("assignments", ["partition_index", "broker_ids"]),
    ("configs", ["name", "value?"]),
]
_DESCRIBE_RESOURCE: Shape = ["resource_type", "resource_name", "configuration_keys?"]
_OFFSET_FOR_LEADER_REQUEST: Shape = [
    ("topics", ["topic", ("partitions", ["partition", "leader_epoch"])]),
]
# The ACL APIs' v0 is v1 without the pattern type (KIP-290 added it in v1).
_ACL_FILTER: Shape = [
    "resource_type_filter",
    "resource_name_filter?",
    "principal_filter?",
    "host_filter?",
    "operation",
    "permission_type",
]
_ACL_ENTRY: Shape = ["principal", "host", "operation", "permission_type"]
_TXN_MARKER_TOPIC: Shape = ["name", "partition_indexes"]
OLD_VERSIONS: dict[tuple[str, int, int], Shape] = {
    ("write_txn_markers", 0, 0): [
        (
            "markers",
            [
                "producer_id",
                "producer_epoch",
                "transaction_result",
                ("topics", _TXN_MARKER_TOPIC),
                "coordinator_epoch",
            ],
        ),
    ],
    ("write_txn_markers", 1, 0): [
        (
            "markers",
            [
                "producer_id",
                ("topics", ["name", ("partitions", ["partition_index", "error_code"])]),
            ],
        ),
    ],
    ("describe_acls", 0, 0): _ACL_FILTER,
    ("describe_acls", 1, 0): [
        "throttle_time_ms",
        "error_code",
        "error_message?",
        ("resources", ["resource_type", "resource_name", ("acls", _ACL_ENTRY)]),
    ],
    ("create_acls", 0, 0): [
        ("creations", ["resource_type", "resource_name", *_ACL_ENTRY]),
    ],
    ("create_acls", 1, 0): [
        "throttle_time_ms",
        ("results", ["error_code", "error_message?"]),
    ],
    ("delete_acls", 0, 0): [("filters", _ACL_FILTER)],
    ("delete_acls", 1, 0): [
        "throttle_time_ms",
        (
            "filter_results",
            [
                "error_code",
                "error_message?",
                (
                    "matching_acls",
                    [
                        "error_code",
                        "error_message?",
                        "resource_type",
                        "resource_name",
                        *_ACL_ENTRY,
                    ],
                ),
            ],
        ),
    ],
    ("create_topics", 0, 0): [("topics", _CREATABLE_TOPIC), "timeout_ms"],
    ("create_topics", 0, 1): [
        ("topics", _CREATABLE_TOPIC),
        "timeout_ms",
        "validate_only",
    ],
    ("create_topics", 1, 0): [("topics", ["name", "error_code"])],
    ("create_topics", 1, 1): [("topics", ["name", "error_code", "error_message?"])],
    ("delete_topics", 0, 0): ["topic_names", "timeout_ms"],
    ("delete_topics", 1, 0): [("responses", ["name", "error_code"])],
    ("describe_configs", 0, 0): [("resources", _DESCRIBE_RESOURCE)],
    ("describe_configs", 1, 0): [
        "throttle_time_ms",
        (
            "results",
            [
                "error_code",
                "error_message?",
                "resource_type",
                "resource_name",
                (
                    "configs",
                    ["name", "value?", "read_only", "is_default", "is_sensitive"],
                ),
            ],
        ),
    ],
    ("offset_for_leader_epoch", 0, 0): _OFFSET_FOR_LEADER_REQUEST,
    ("offset_for_leader_epoch", 0, 1): _OFFSET_FOR_LEADER_REQUEST,
    ("offset_for_leader_epoch", 1, 0): [
        (
            "topics",
            ["topic", ("partitions", ["error_code", "partition", "end_offset"])],
        ),
    ],
    ("offset_for_leader_epoch", 1, 1): [
        (
            "topics",
            [
                "topic",
                (
                    "partitions",
                    ["error_code", "partition", "leader_epoch", "end_offset"],
                ),
            ],
        ),
    ],
}


ORACLE = KioOracle(names={mod: (m[1], m[2]) for mod, m in MODULES.items()})


def _shape(cls: type, version: int) -> Shape:
    """Our fields present at ``version`` in the notation of OLD_VERSIONS."""
    out: Shape = []
    for name, spec in present(cls, version):
        t = spec.type
        element = t.of if t.name == "array" else t
        assert element is not None
        if element.struct is not None:
            out.append((name, _shape(element.struct, version)))
        else:
            out.append(name + ("?" if version in t.nullable else ""))
        assert spec.tag is None or version not in spec.tagged, "no tags pre-flexible"
    return out


@pytest.mark.parametrize(("mod", "kind", "version"), ORACLE.cases())
def test_fields_match_kio(mod: str, kind: int, version: int) -> None:
    """Our fields in this version are kio's: names, types, tags, nulls, defaults."""
    ORACLE.check_fields(mod, kind, version)


@pytest.mark.parametrize(("mod", "kind", "version"), ORACLE.cases())
def test_flexibility_matches_kio(mod: str, kind: int, version: int) -> None:
    """A version is flexible in our schema exactly when kio says so."""
    ORACLE.check_flexibility(mod, kind, version)


@pytest.mark.parametrize(("mod", "kind", "version"), sorted(OLD_VERSIONS), ids=str)
def test_old_versions_match_kafka_json(mod: str, kind: int, version: int) -> None:
    """Versions kio lacks match Kafka 3.x's JSON, and are not flexible."""
    assert ORACLE.kio(mod, version, kind) is None, (
        "kio has it: compare with kio instead"
    )
    cls = ORACLE.ours(mod, kind)
    assert version in message_spec(cls).valid
    assert version not in message_spec(cls).flexible
    assert _shape(cls, version) == OLD_VERSIONS[mod, kind, version]


@pytest.mark.parametrize("mod", list(MODULES))
def test_declares_required_versions(mod: str) -> None:
    """Each module registers its API key and covers at least the required range;
    every valid version is checked above, against kio or the old JSON."""
    key, _, _, low, high = MODULES[mod]
    for kind, name in enumerate(("request", "response")):
        spec = message_spec(ORACLE.ours(mod, kind))
        assert spec.api_key == key
        assert spec.kind == name
        assert spec.valid.low <= low
        assert spec.valid.high >= high
        for version in range(spec.valid.low, spec.valid.high + 1):
            checked = (mod, kind, version) in OLD_VERSIONS
            assert checked or ORACLE.kio(mod, version, kind) is not None, version


def test_distinct_defaults_by_hand() -> None:
    """Non-zero Kafka defaults kio does not show the way we do."""
    from protocol.messages.create_topics import CreateTopicsRequest
    from protocol.messages.delete_topics import DeletableTopicResult
    from protocol.messages.describe_configs import DescribeConfigsResourceResult

    assert CreateTopicsRequest().timeout_ms == 60000
    # name is nullable only from v6; before that Kafka's default is "", not null
    assert DeletableTopicResult().name == ""
    assert DescribeConfigsResourceResult().config_source == -1


def _kafka_json(name: str) -> dict[str, object]:
    """Kafka's JSON definition of ``name``, as kafka-python 3 ships it (read
    directly: importing kafka.protocol warns, and warnings are errors here)."""
    spec = importlib.util.find_spec("kafka")
    assert spec is not None
    assert spec.origin is not None
    path = Path(spec.origin).parent / "protocol/schemas/resources" / f"{name}.json"
    text = re.sub(r"(?m)^\s*//.*$", "", path.read_text())
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def _snake(name: str) -> str:
    """Kafka's JSON field name in snake_case (``Enable2Pc`` -> ``enable2_pc``)."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", name).lower()


def _json_default(text: object, kind: object = "") -> object:
    if kind == "string" and str(text).lower() != "null":
        return str(text)
    lowered = str(text).lower()
    if lowered in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[lowered]
    return int(str(text))


JsonFields = list[dict[str, object]]


def _compare_json(
    cls: type,
    fields: JsonFields,
    valid: range,
    path: str,
    common: dict[str, JsonFields] | None = None,
) -> Iterator[str]:
    """Yield every difference between our struct and Kafka's JSON fields (a field
    typed with one of the ``common`` structs is compared with its fields, in the
    versions the field exists)."""
    common = common or {}
    ours = dict(field_specs(cls))
    for version in valid:
        in_json = [
            _snake(str(jf["name"]))
            for jf in fields
            if version in VersionRange.parse(str(jf["versions"]))
        ]
        if in_json != [n for n, _ in present(cls, version)]:
            yield f"{path} v{version}: JSON has {in_json}"
    for jf in fields:
        name = _snake(str(jf["name"]))
        where = f"{path}.{name}"
        spec = ours.get(name)
        if spec is None:
            continue  # reported above, unless outside our versions
        json_versions = VersionRange.parse(str(jf["versions"]))
        live = [v for v in valid if v in json_versions]
        nullable = VersionRange.parse(str(jf.get("nullableVersions", "none")))
        if [v in spec.type.nullable for v in live] != [v in nullable for v in live]:
            yield f"{where}: nullable {spec.type.nullable}, JSON {nullable}"
        tagged = VersionRange.parse(str(jf.get("taggedVersions", "none")))
        if [v in spec.tagged for v in live] != [v in tagged for v in live]:
            yield f"{where}: tagged {spec.tagged}, JSON {tagged}"
        if spec.tag != jf.get("tag"):
            yield f"{where}: tag {spec.tag}, JSON {jf.get('tag')}"
        if "default" in jf:
            expected = _json_default(jf["default"], jf.get("type"))
            if default(cls, name) != expected:
                yield f"{where}: default {default(cls, name)!r}, JSON {expected!r}"
        nested = jf.get("fields")
        if nested is None:
            nested = common.get(str(jf["type"]).removeprefix("[]"))
        element = spec.type.of if spec.type.name == "array" else spec.type
        assert element is not None
        if isinstance(nested, list) != (element.struct is not None):
            yield f"{where}: struct-ness differs (commonStructs are not resolved)"
        elif isinstance(nested, list):
            assert element.struct is not None
            live_range = range(live[0], live[-1] + 1) if live else range(0)
            yield from _compare_json(element.struct, nested, live_range, where, common)


def _json_cases() -> Iterator[tuple[str, int]]:
    for mod in MODULES:
        for kind in (0, 1):
            yield mod, kind


@pytest.mark.parametrize(("mod", "kind"), list(_json_cases()))
def test_fields_match_kafka_json(mod: str, kind: int) -> None:
    """Kafka's JSON (kafka-python's copy): ranges, nulls, tags, defaults, order."""
    cls = ORACLE.ours(mod, kind)
    data = _kafka_json(cls.__name__)
    json_valid = VersionRange.parse(str(data["validVersions"]))
    spec = message_spec(cls)
    assert spec.flexible == VersionRange.parse(str(data["flexibleVersions"]))
    assert spec.valid.high == json_valid.high  # Kafka's current maximum
    fields = data["fields"]
    assert isinstance(fields, list)
    valid = range(json_valid.low, json_valid.high + 1)
    structs = data.get("commonStructs", [])
    assert isinstance(structs, list)
    common = {str(c["name"]): c["fields"] for c in structs}
    assert list(_compare_json(cls, fields, valid, cls.__name__, common)) == []
