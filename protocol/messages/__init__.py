"""The message schemas, one module per API, and the static index that loads them lazily.

Importing a message module declares ~10 frozen dataclasses (~5 ms each module, ~150 ms
for all of them), so :mod:`protocol.codec` imports a module only when its API is first
used: :data:`MODULES` maps each API key to its module and :func:`load` imports it.
:data:`SUPPORTED` is the (min, max) version range with both a request and a response
schema, what ApiVersions needs before any module is loaded. Both tables are checked
against what the modules register by ``tests/protocol/test_message_index.py``; code
that must see every schema (tests iterating :data:`protocol.schema.REGISTRY`) calls
:func:`load_all` first.
"""

from __future__ import annotations

import importlib
from typing import Final

# api_key -> module of protocol.messages declaring its request and response.
MODULES: Final[dict[int, str]] = {
    0: "produce",
    1: "fetch",
    2: "list_offsets",
    3: "metadata",
    8: "offset_commit",
    9: "offset_fetch",
    10: "find_coordinator",
    11: "join_group",
    12: "heartbeat",
    13: "leave_group",
    14: "sync_group",
    15: "describe_groups",
    16: "list_groups",
    17: "sasl_handshake",
    18: "api_versions",
    19: "create_topics",
    20: "delete_topics",
    21: "delete_records",
    22: "init_producer_id",
    23: "offset_for_leader_epoch",
    24: "add_partitions_to_txn",
    25: "add_offsets_to_txn",
    26: "end_txn",
    27: "write_txn_markers",
    28: "txn_offset_commit",
    29: "describe_acls",
    30: "create_acls",
    31: "delete_acls",
    32: "describe_configs",
    33: "alter_configs",
    35: "describe_log_dirs",
    36: "sasl_authenticate",
    37: "create_partitions",
    42: "delete_groups",
    43: "elect_leaders",
    44: "incremental_alter_configs",
    45: "alter_partition_reassignments",
    46: "list_partition_reassignments",
    47: "offset_delete",
    48: "describe_client_quotas",
    50: "describe_user_scram_credentials",
    51: "alter_user_scram_credentials",
    60: "describe_cluster",
    61: "describe_producers",
    75: "describe_topic_partitions",
}

# api_key -> (min, max): versions both the request and the response schema declare.
SUPPORTED: Final[dict[int, tuple[int, int]]] = {
    0: (0, 13),
    1: (0, 18),
    2: (0, 11),
    3: (0, 13),
    8: (0, 10),
    9: (0, 10),
    10: (0, 6),
    11: (0, 9),
    12: (0, 4),
    13: (0, 5),
    14: (0, 5),
    15: (0, 6),
    16: (0, 5),
    17: (0, 1),
    18: (0, 4),
    19: (0, 7),
    20: (0, 6),
    21: (0, 2),
    22: (0, 6),
    23: (0, 4),
    24: (0, 5),
    25: (0, 4),
    26: (0, 5),
    27: (0, 2),
    28: (0, 5),
    29: (0, 3),
    30: (0, 3),
    31: (0, 3),
    32: (0, 4),
    33: (0, 2),
    35: (0, 4),
    36: (0, 2),
    37: (0, 3),
    42: (0, 2),
    43: (0, 2),
    44: (0, 1),
    45: (0, 0),
    46: (0, 0),
    47: (0, 0),
    48: (0, 1),
    50: (0, 0),
    51: (0, 0),
    60: (0, 2),
    61: (0, 0),
    75: (0, 0),
}


def load(api_key: int) -> bool:
    """Import the module of ``api_key`` (registering its schemas); False if unknown."""
    name = MODULES.get(api_key)
    if name is None:
        return False
    importlib.import_module(f"{__name__}.{name}")
    return True


def load_all() -> None:
    """Import every message module, so that the registry holds every schema."""
    for api_key in MODULES:
        load(api_key)
