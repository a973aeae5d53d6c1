"""Circuit breakers, one per key (per provider: see `LLMService`).

closed --N consecutive failures--> open --cooldown--> half-open --success--> closed
                                     ^                     |
                                     +------failure--------+

While open, calls are refused without touching the network. Half-open admits one
trial call at a time; its outcome closes or re-opens the breaker. The clock is
injectable so tests move time instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

import structlog

log = structlog.get_logger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        key: str = "",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds cannot be negative")
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._key = key
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 unless open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def allow(self) -> bool:
        """Whether a call may go ahead now; a half-open breaker admits one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        if self._opened_at is not None:
            log.info("circuit_closed", key=self._key)
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or self._failures >= self._threshold:
            if self._opened_at is None or was_trial:
                log.warning("circuit_opened", key=self._key, failures=self._failures)
            self._opened_at = self._clock()

    def abandon(self) -> None:
        """The admitted call ended without an outcome (cancelled); free the trial slot."""
        self._trial_in_flight = False


class BreakerBoard:
    """The breakers by key, created on first use with the same settings."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                failure_threshold=self._threshold,
                cooldown_seconds=self._cooldown,
                clock=self._clock,
                key=key,
            )
            self._breakers[key] = breaker
        return breaker

    def forget(self, key: str) -> None:
        self._breakers.pop(key, None)

    def not_closed(self) -> dict[str, BreakerState]:
        """Keys whose breaker is open or half-open, with the state."""
        states = {key: b.state for key, b in self._breakers.items()}
        return {key: s for key, s in states.items() if s is not BreakerState.CLOSED}
