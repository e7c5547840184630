"""Failed-login rate limiting, per (user, peer host) and per peer host.

Two counters see each failed login: the (user, host) pair's and the host's. After
``max_failures`` failures of one user from one host within ``window_s`` seconds,
that user is locked out *from that host* for ``lockout_s`` seconds (logins refused
without looking at the password); other users on the same host, and the same user
from other hosts, are unaffected. The host counter has a much higher threshold,
``host_max_failures`` (default ten times ``max_failures``), and locks the whole host:
a spray of guesses over many user names from one host is bounded too. A success
clears the pair's count, never the host's (one valid account must not reset a
spray's count). Memory is bounded: at most ``max_keys`` keys are tracked (the
oldest are forgotten first). Pure; the clock is injected.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Entry:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


def _host_key(host: str) -> str:
    return f"host:{host}"


def _pair_key(user: str, host: str) -> str:
    # NUL cannot occur in a SASL user name (it is PLAIN's separator).
    return f"user:{user}\0host:{host}"


class LoginLimiter:
    """Counts failed logins and says when a (user, host) or a host must wait."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        host_max_failures: int | None = None,
        window_s: float = 60.0,
        lockout_s: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.host_max_failures = (
            host_max_failures if host_max_failures is not None else 10 * max_failures
        )
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def retry_after(self, host: str, user: str | None = None) -> float:
        """Seconds until ``user`` may log in from ``host`` (0.0: allowed now).

        Without a user, only the host-wide lock is looked at.
        """
        keys = [_host_key(host)]
        if user is not None:
            keys.append(_pair_key(user, host))
        now = self._clock()
        wait = 0.0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry.locked_until > now:
                wait = max(wait, entry.locked_until - now)
        return wait

    def failure(self, host: str, user: str | None = None) -> bool:
        """Record a failed login (user unknown: host only); True if now locked."""
        now = self._clock()
        locked = self._record(_host_key(host), self.host_max_failures, now)
        if user is not None:
            locked = (
                self._record(_pair_key(user, host), self.max_failures, now) or locked
            )
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        return locked

    def success(self, host: str, user: str) -> None:
        """Forget the failures of ``user`` from ``host`` (the host's count stays)."""
        self._entries.pop(_pair_key(user, host), None)

    def _record(self, key: str, limit: int, now: float) -> bool:
        entry = self._entries.pop(key, None) or _Entry()
        self._entries[key] = entry  # most recently used last
        failures = entry.failures
        failures.append(now)
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        while len(failures) > limit:
            failures.popleft()
        if len(failures) >= limit:
            entry.locked_until = now + self.lockout_s
            failures.clear()
            return True
        return False

    def __len__(self) -> int:
        return len(self._entries)
