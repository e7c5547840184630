"""Failed-login rate limiting, per peer host and per user name.

After ``max_failures`` failed logins within ``window_s`` seconds a key (``host:...``
or ``user:...``) is locked for ``lockout_s`` seconds: its logins are refused without
looking at the password, so guessing is bounded by ``max_failures`` per window per
host and per user. A success clears the user's and the host's counts. Memory is
bounded: at most ``max_keys`` keys are tracked (the oldest are forgotten first).
Pure; the clock is injected.
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


class LoginLimiter:
    """Counts failed logins and says when a host or user must wait."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        lockout_s: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def retry_after(self, *keys: str) -> float:
        """Seconds until every key may try again (0.0: allowed now)."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry.locked_until > now:
                wait = max(wait, entry.locked_until - now)
        return wait

    def failure(self, *keys: str) -> bool:
        """Record a failed login for each key; True if one of them is now locked."""
        now = self._clock()
        locked = False
        for key in keys:
            entry = self._entries.pop(key, None) or _Entry()
            self._entries[key] = entry  # most recently used last
            failures = entry.failures
            failures.append(now)
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            while len(failures) > self.max_failures:
                failures.popleft()
            if len(failures) >= self.max_failures:
                entry.locked_until = now + self.lockout_s
                failures.clear()
                locked = True
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        return locked

    def success(self, *keys: str) -> None:
        """Forget the failures of these keys."""
        for key in keys:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
