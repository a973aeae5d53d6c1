from __future__ import annotations

from services.llm.breaker import BreakerBoard, BreakerState, CircuitBreaker
from tests.services.llm.support import FakeClock


def breaker(clock: FakeClock, threshold: int = 3, cooldown: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, cooldown_seconds=cooldown, clock=clock)


def state(b: CircuitBreaker) -> BreakerState:
    # A call, not a property read: mypy would otherwise narrow the state for the whole test.
    return b.state


class TestCircuitBreaker:
    def test_opens_after_consecutive_failures(self, clock: FakeClock) -> None:
        b = breaker(clock)
        for _ in range(2):
            assert b.allow()
            b.record_failure()
        assert state(b) is BreakerState.CLOSED

        b.record_failure()

        assert state(b) is BreakerState.OPEN
        assert not b.allow()
        assert b.retry_in() == 30.0

    def test_a_success_resets_the_count(self, clock: FakeClock) -> None:
        b = breaker(clock)
        b.record_failure()
        b.record_failure()
        b.record_success()
        b.record_failure()

        assert state(b) is BreakerState.CLOSED
        assert b.consecutive_failures == 1

    def test_half_open_after_cooldown_admits_one_trial(self, clock: FakeClock) -> None:
        b = breaker(clock, threshold=1)
        b.record_failure()
        clock.advance(29.9)
        assert not b.allow()

        clock.advance(0.1)

        assert state(b) is BreakerState.HALF_OPEN
        assert b.allow()
        assert not b.allow()

    def test_trial_success_closes(self, clock: FakeClock) -> None:
        b = breaker(clock, threshold=1)
        b.record_failure()
        clock.advance(30)
        assert b.allow()

        b.record_success()

        assert state(b) is BreakerState.CLOSED
        assert b.allow()
        assert b.allow()

    def test_trial_failure_reopens_for_a_full_cooldown(self, clock: FakeClock) -> None:
        b = breaker(clock, threshold=5)
        for _ in range(5):
            b.record_failure()
        clock.advance(30)
        assert b.allow()

        b.record_failure()

        assert state(b) is BreakerState.OPEN
        assert b.retry_in() == 30.0

    def test_abandoned_trial_frees_the_slot(self, clock: FakeClock) -> None:
        b = breaker(clock, threshold=1)
        b.record_failure()
        clock.advance(30)
        assert b.allow()

        b.abandon()

        assert b.allow()


class TestBreakerBoard:
    def test_one_breaker_per_key(self, clock: FakeClock) -> None:
        board = BreakerBoard(failure_threshold=1, cooldown_seconds=10, clock=clock)
        board.get("a").record_failure()

        assert board.get("a").state is BreakerState.OPEN
        assert board.get("b").state is BreakerState.CLOSED
        assert board.not_closed() == {"a": BreakerState.OPEN}

        clock.advance(10)
        assert board.not_closed() == {"a": BreakerState.HALF_OPEN}
        board.forget("a")
        assert board.not_closed() == {}
