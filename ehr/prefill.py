"""Short-lived tokens that open the calculator prefilled with a CDS Hooks patient's mapped inputs.

The card's link carries only a random token (in the URL fragment, which browsers do not send to
servers or write to access logs); the inputs stay in this process's memory, expire, and are handed out
once. One
process holds them: with several BentoML workers a token is redeemable only at the worker that
made it, so the service keeps the default of one worker.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

DEFAULT_TTL_SECONDS = 15 * 60
MAX_ENTRIES = 10_000  # a bound on memory: the oldest tokens go first


class PrefillStore:
    def __init__(self, ttl_seconds: float = DEFAULT_TTL_SECONDS, clock: Any = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self._clock = clock
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def put(self, inputs: dict[str, Any]) -> str:
        """Store one patient's inputs; return an unguessable token valid for `ttl` seconds."""
        token = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            self._purge(now)
            while len(self._items) >= MAX_ENTRIES:
                self._items.pop(next(iter(self._items)))
            self._items[token] = (now + self.ttl, dict(inputs))
        return token

    def get(self, token: str) -> dict[str, Any] | None:
        """The inputs behind a token, or None when it is unknown, expired or already redeemed: a token opens
        the calculator once (a link copied from the card, or read over a shoulder, is worth nothing after)."""
        with self._lock:
            self._purge(self._clock())
            item = self._items.pop(token, None)
        return dict(item[1]) if item else None

    def _purge(self, now: float) -> None:
        for t in [t for t, (exp, _) in self._items.items() if exp <= now]:
            del self._items[t]


STORE = PrefillStore()
