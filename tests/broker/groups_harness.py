"""A fake-clock driver for the pure group coordinator (no event loop)."""

from __future__ import annotations

import itertools

from broker.groups.coordinator import GroupCoordinator
from broker.groups.model import (
    Effect,
    JoinRequest,
    JoinResult,
    LeavingMember,
    Protocol,
    Reply,
    SyncRequest,
    SyncResult,
)
from protocol.error_codes import ErrorCode

RANGE = (Protocol(name="range", metadata=b"sub"),)


class Harness:
    """Drives a coordinator with a fake clock and records every reply by token."""

    def __init__(self, **kwargs: int) -> None:
        ids = itertools.count(1)
        self.coord = GroupCoordinator(
            new_member_id=lambda client: f"{client}-{next(ids)}", **kwargs
        )
        self.now = 0
        self.tokens = itertools.count(1)
        self.replies: dict[int, JoinResult | SyncResult] = {}
        self.reply_log: list[tuple[int, JoinResult | SyncResult]] = []

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Reply):
                assert effect.token not in self.replies, "a token is answered twice"
                self.replies[effect.token] = effect.result
                self.reply_log.append((effect.token, effect.result))

    def advance(self, ms: int) -> None:
        self.now += ms
        self.apply(self.coord.tick(self.now))

    def join(
        self,
        group: str = "g",
        member_id: str = "",
        *,
        instance: str | None = None,
        protocols: tuple[Protocol, ...] = RANGE,
        v4: bool = True,
        session_ms: int = 10_000,
        rebalance_ms: int = 30_000,
        client: str = "c",
        protocol_type: str = "consumer",
        skip: bool = False,
    ) -> int:
        token = next(self.tokens)
        self.apply(
            self.coord.join(
                JoinRequest(
                    token=token,
                    group_id=group,
                    member_id=member_id,
                    group_instance_id=instance,
                    client_id=client,
                    client_host="/127.0.0.1",
                    session_timeout_ms=session_ms,
                    rebalance_timeout_ms=rebalance_ms,
                    protocol_type=protocol_type,
                    protocols=protocols,
                    require_known_member_id=v4,
                    supports_skip_assignment=skip,
                ),
                self.now,
            )
        )
        return token

    def join_result(self, token: int) -> JoinResult | None:
        result = self.replies.get(token)
        assert result is None or isinstance(result, JoinResult)
        return result

    def sync_result(self, token: int) -> SyncResult | None:
        result = self.replies.get(token)
        assert result is None or isinstance(result, SyncResult)
        return result

    def full_join(self, group: str = "g", **kwargs: object) -> str:
        """KIP-394 two-step join; returns the member id (the join stays pending)."""
        first = self.join_result(self.join(group, **kwargs))  # type: ignore[arg-type]
        assert first is not None
        assert first.error == ErrorCode.MEMBER_ID_REQUIRED
        self.last_token = self.join(group, first.member_id, **kwargs)  # type: ignore[arg-type]
        return first.member_id

    def sync(
        self,
        member_id: str,
        generation: int,
        group: str = "g",
        assignments: dict[str, bytes] | None = None,
        instance: str | None = None,
    ) -> int:
        token = next(self.tokens)
        self.apply(
            self.coord.sync(
                SyncRequest(
                    token=token,
                    group_id=group,
                    member_id=member_id,
                    generation_id=generation,
                    group_instance_id=instance,
                    assignments=tuple((assignments or {}).items()),
                ),
                self.now,
            )
        )
        return token

    def heartbeat(
        self,
        member_id: str,
        generation: int,
        group: str = "g",
        instance: str | None = None,
    ) -> ErrorCode:
        return self.coord.heartbeat(group, member_id, generation, instance, self.now)

    def leave(self, *members: LeavingMember, group: str = "g") -> list[ErrorCode]:
        errors, effects = self.coord.leave(group, members, self.now)
        self.apply(effects)
        return errors
