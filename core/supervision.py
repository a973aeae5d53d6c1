"""Supervised background loops: a crash is logged, counted, backed off and restarted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

_CANCEL_RETRY_SECONDS = 0.5


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set, at most `seconds`; True if it was set. Built on
    asyncio.timeout, not wait_for, which can swallow a cancellation on Python 3.11
    (CPython gh-86296) and leave a loop that will not stop."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


class SupervisedTask:
    """Runs `target()` until stopped; restarts it after a crash with exponential backoff.

    A `target` that returns normally is done and is not restarted.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[], Awaitable[None]],
        *,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        self.name = name
        self._target = target
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self.crashes = 0
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        backoff = self._initial_backoff
        while True:
            try:
                await self._target()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.crashes += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("task_crashed", task=self.name, crashes=self.crashes)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end. Cancels again while it runs: on
        Python 3.11 `asyncio.wait_for` can swallow a cancellation that lands just as
        its inner wait completes (CPython gh-86296), which left a loop running and
        `stop()` waiting forever."""
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=_CANCEL_RETRY_SECONDS)
        if not task.cancelled() and task.exception() is not None:
            log.warning("task_ended_with_error", task=self.name, error=repr(task.exception()))
        self._task = None
