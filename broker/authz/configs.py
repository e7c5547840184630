"""Authorisation adapters of the config-changing APIs (AlterConfigs,
IncrementalAlterConfigs): Kafka's ALTER_CONFIGS on the topic for TOPIC resources
(TOPIC_AUTHORIZATION_FAILED), on the cluster for BROKER and BROKER_LOGGER ones
(CLUSTER_AUTHORIZATION_FAILED), as ``KafkaApis.authorizeConfigResources`` does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from broker.authz.base import (
    CLUSTER_DENIED,
    DENIED_MESSAGE,
    TOPIC_DENIED,
    Adapter,
    Checker,
    LazyModule,
    Outcome,
    partial,
    split,
)
from broker.security.acl import Op, Resource
from protocol.error_codes import ErrorCode

if TYPE_CHECKING:
    from protocol.messages import alter_configs as ac
    from protocol.messages import incremental_alter_configs as iac
else:
    ac = LazyModule("protocol.messages.alter_configs")
    iac = LazyModule("protocol.messages.incremental_alter_configs")

_TOPIC, _BROKER, _BROKER_LOGGER = 2, 4, 8


def _code(c: Checker, resource_type: int, name: str) -> ErrorCode:
    if resource_type == _TOPIC:
        ok = c.may(Op.ALTER_CONFIGS, Resource.TOPIC, name)
        return ErrorCode.NONE if ok else TOPIC_DENIED
    if resource_type in (_BROKER, _BROKER_LOGGER):
        ok = c.may(Op.ALTER_CONFIGS, Resource.CLUSTER)
        return ErrorCode.NONE if ok else CLUSTER_DENIED
    return ErrorCode.NONE  # the handler refuses other types


def _adapter(module: Any, request_cls: str, response_cls: str) -> Adapter:
    def adapt(c: Checker, req: Any) -> Outcome:
        def code(r: Any) -> ErrorCode:
            return _code(c, r.resource_type, r.resource_name)

        ok, denied = split(req.resources, lambda r: code(r) == ErrorCode.NONE)
        errors = tuple(
            module.AlterConfigsResourceResponse(
                error_code=code(r),
                error_message=DENIED_MESSAGE,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
            )
            for r in denied
        )
        return partial(
            req,
            "resources",
            ok,
            errors,
            "responses",
            lambda: getattr(module, response_cls)(throttle_time_ms=0, responses=errors),
        )

    adapt.__name__ = f"_{request_cls}"
    return adapt


CONFIG_ADAPTERS: Final[dict[int, Adapter]] = {
    33: _adapter(ac, "AlterConfigsRequest", "AlterConfigsResponse"),
    44: _adapter(
        iac, "IncrementalAlterConfigsRequest", "IncrementalAlterConfigsResponse"
    ),
}
