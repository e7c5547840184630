"""Checks the schemas of the admin tools' APIs against kio, field by field.

For every version kio generates (DescribeLogDirs v1–4, DescribeTopicPartitions,
OffsetDelete, DescribeProducers, DescribeTransactions, ListTransactions v0–1, the SCRAM APIs, DescribeClientQuotas v0–1), the
fields present must match kio's: names, wire types, tags, nullability, Kafka's
non-zero defaults, and flexibility. DescribeLogDirs v0, which Kafka 4 dropped
(and kio lacks), has v1's fields: only the throttling moved between them.
"""

from __future__ import annotations

import pytest

from protocol.schema import message_spec
from tests.protocol._kio_compare import KioOracle, present

ORACLE = KioOracle(
    names={
        "describe_log_dirs": ("DescribeLogDirsRequest", "DescribeLogDirsResponse"),
        "describe_topic_partitions": (
            "DescribeTopicPartitionsRequest",
            "DescribeTopicPartitionsResponse",
        ),
        "offset_delete": ("OffsetDeleteRequest", "OffsetDeleteResponse"),
        "describe_producers": (
            "DescribeProducersRequest",
            "DescribeProducersResponse",
        ),
        "describe_transactions": (
            "DescribeTransactionsRequest",
            "DescribeTransactionsResponse",
        ),
        "list_transactions": ("ListTransactionsRequest", "ListTransactionsResponse"),
        "describe_user_scram_credentials": (
            "DescribeUserScramCredentialsRequest",
            "DescribeUserScramCredentialsResponse",
        ),
        "alter_user_scram_credentials": (
            "AlterUserScramCredentialsRequest",
            "AlterUserScramCredentialsResponse",
        ),
        "describe_client_quotas": (
            "DescribeClientQuotasRequest",
            "DescribeClientQuotasResponse",
        ),
    }
)


@pytest.mark.parametrize(("mod", "kind", "version"), ORACLE.cases())
def test_fields_match_kio(mod: str, kind: int, version: int) -> None:
    """Our fields in this version are kio's: names, types, tags, nulls, defaults."""
    ORACLE.check_fields(mod, kind, version)


@pytest.mark.parametrize(("mod", "kind", "version"), ORACLE.cases())
def test_flexibility_matches_kio(mod: str, kind: int, version: int) -> None:
    """A version is flexible in our schema exactly when kio says so."""
    ORACLE.check_flexibility(mod, kind, version)


@pytest.mark.parametrize("kind", [0, 1])
def test_describe_log_dirs_v0_is_v1(kind: int) -> None:
    """v0 (not in kio) has exactly v1's fields and is not flexible."""
    assert ORACLE.kio("describe_log_dirs", 0, kind) is None
    cls = ORACLE.ours("describe_log_dirs", kind)
    assert 0 not in message_spec(cls).flexible
    assert [n for n, _ in present(cls, 0)] == [n for n, _ in present(cls, 1)]


def test_every_version_is_compared() -> None:
    """Each declared version is checked against kio, except DescribeLogDirs v0."""
    checked = set(ORACLE.cases())
    for mod in ORACLE.names:
        for kind in (0, 1):
            spec = message_spec(ORACLE.ours(mod, kind))
            for version in range(spec.valid.low, spec.valid.high + 1):
                if (mod, version) != ("describe_log_dirs", 0):
                    assert (mod, kind, version) in checked, (mod, kind, version)
