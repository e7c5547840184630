"""The authorisation middleware: every request passes here before its handler.

The server puts :class:`Authorize` in front of the handlers when security enforces
something (``SecurityService.enforces``); otherwise requests go straight to the
handlers. :class:`Authorize` asks the connection's principal's permissions (see
:mod:`broker.security.acl`) for what the request touches, the way Kafka's
``KafkaApis`` does, and then either answers at once (everything denied), or hands
the handler a request with the denied parts removed and adds their errors to the
handler's response (also when the response is deferred). Handlers never see a
resource the client may not use.

What is checked (Kafka's operations; errors TOPIC_AUTHORIZATION_FAILED (29),
GROUP_AUTHORIZATION_FAILED (30), CLUSTER_AUTHORIZATION_FAILED (31),
TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53)):

- Produce: WRITE on each topic. Fetch: READ on each topic. ListOffsets,
  OffsetForLeaderEpoch: DESCRIBE on each topic.
- Metadata: DESCRIBE on each named topic; "all topics" lists only describable ones;
  auto-creating a missing topic needs CREATE on it (or on the cluster).
- CreateTopics: CREATE; DeleteTopics, DeleteRecords: DELETE; CreatePartitions: ALTER;
  DescribeConfigs: DESCRIBE_CONFIGS (or DESCRIBE) on a topic, on the cluster for
  a broker.
- JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit: READ on the group
  (OffsetCommit also READ on each topic); OffsetFetch, DescribeGroups,
  FindCoordinator: DESCRIBE on the group; DeleteGroups: DELETE on the group;
  ListGroups: the groups the principal may DESCRIBE (all with cluster DESCRIBE).
- InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn,
  EndTxn: WRITE on the transactional id (AddPartitionsToTxn also WRITE on each
  topic, AddOffsetsToTxn READ on the group); FindCoordinator for a transactional
  id: DESCRIBE on it (:mod:`broker.authz.transactions`).
- TxnOffsetCommit: WRITE on the transactional id, READ on the group and on each
  topic.
- WriteTxnMarkers (inter-broker, Kafka's CLUSTER_ACTION): super users only; others
  get CLUSTER_AUTHORIZATION_FAILED per partition.
- ElectLeaders, AlterPartitionReassignments: ALTER on the cluster;
  ListPartitionReassignments: DESCRIBE on the cluster.
- DescribeLogDirs, DescribeClientQuotas, DescribeUserScramCredentials: DESCRIBE on
  the cluster; AlterUserScramCredentials: ALTER on the cluster;
  DescribeTopicPartitions: DESCRIBE on each topic; DescribeProducers: READ on each
  topic; OffsetDelete: DELETE on the group and READ on each topic.
- CreateAcls, DeleteAcls: ALTER on the cluster; DescribeAcls: DESCRIBE on the
  cluster (:mod:`broker.authz.acls`).
- ApiVersions, SASL, DescribeCluster, idempotent InitProducerId: allowed.
- Any other API: super users only; others get the connection closed
  (:class:`AuthorizationDenied`), since there is no generic error response.

The per-API adapters live in :mod:`broker.authz.topics`, :mod:`broker.authz.groups`,
:mod:`broker.authz.tooling`, :mod:`broker.authz.configs`, :mod:`broker.authz.acls`
and :mod:`broker.authz.transactions`;
their shared pieces in
:mod:`broker.authz.base`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from broker.authz.acls import ACL_ADAPTERS
from broker.authz.base import Adapter, Checker, Respond
from broker.authz.configs import CONFIG_ADAPTERS
from broker.authz.groups import GROUP_ADAPTERS
from broker.authz.tooling import TOOLING_ADAPTERS
from broker.authz.topics import TOPIC_ADAPTERS
from broker.authz.transactions import TXN_ADAPTERS
from broker.net.request import (
    NO_RESPONSE,
    CloseConnection,
    Deferred,
    Handler,
    HandlerResult,
    RequestContext,
)
from broker.security.acl import Op, Resource
from broker.security.service import SecurityService
from broker.topics.service import TopicService

ALWAYS_ALLOWED: Final = frozenset({17, 18, 36, 60})
_ADAPTERS: Final[dict[int, Adapter]] = {
    **TOPIC_ADAPTERS,
    **GROUP_ADAPTERS,
    **TOOLING_ADAPTERS,
    **CONFIG_ADAPTERS,
    **ACL_ADAPTERS,
    **TXN_ADAPTERS,
}


class AuthorizationDenied(CloseConnection):
    """The request is not allowed and has no error response: close the connection."""

    event = "authorization_denied"


@dataclass(frozen=True, slots=True)
class Authorize:
    """Middleware: run the handler on the authorised part of the request."""

    security: SecurityService
    topics: TopicService

    def __call__(
        self, rctx: RequestContext, request: object, call: Handler
    ) -> HandlerResult:
        svc = self.security
        api_key = rctx.header.request_api_key
        conn = rctx.security
        if conn is None or not svc.authorizer.enabled or api_key in ALWAYS_ALLOWED:
            return call(rctx, request)
        checker = Checker(svc, conn, rctx, self.topics)
        adapter = _ADAPTERS.get(api_key)
        if adapter is None:
            if checker.may(Op.ALL, Resource.CLUSTER):
                return call(rctx, request)
            raise AuthorizationDenied(f"api key {api_key} needs a super user")
        outcome = adapter(checker, request)
        if isinstance(outcome, Respond):
            return outcome.response
        result = call(rctx, outcome.request)
        merge = outcome.merge
        if merge is None or result is NO_RESPONSE:
            return result
        if isinstance(result, Deferred):
            inner: Callable[[], Awaitable[object]] = result.run

            async def merged() -> object:
                return merge(await inner())

            return Deferred(merged)
        return merge(result)
