"""One agent decision cycle, streamed live as AG-UI protocol events.

A cycle is one AG-UI run: `RUN_STARTED`, then named steps (`STEP_STARTED` /
`STEP_FINISHED`, e.g. "gather_context", "decide", "check_risk") and the agent's reasoning
as assistant text messages (`TEXT_MESSAGE_START`, `TEXT_MESSAGE_CONTENT` deltas,
`TEXT_MESSAGE_END`), and finally `RUN_FINISHED` (with the cycle's result) or `RUN_ERROR`.
The thread is the agent (`threadId` is the agent's id unless given), so successive
cycles are successive runs of one conversation. Every event carries `timestamp` in
milliseconds since the Unix epoch, and `RUN_STARTED` declares `protocolVersion`.

Envelope: each AG-UI event is published on the bus as one `agent_run` event on channel
`agent:{agent_id}`, for the agent's owner only:

    {"type": "agent_run", "timestamp": "...", "channel": "agent:<id>", "seq": 7,
     "data": {"type": "STEP_STARTED", "timestamp": 1767225600000, "stepName": "decide"}}

`data` is exactly what the package's own SSE encoder writes after `data: ` (camelCase
keys, optional fields without a value left out), so an AG-UI client consumes the
stream by subscribing to `agent:{id}` and feeding the `data` of each `agent_run` event,
in seq order, to its event pipeline (in Python: `TypeAdapter(ag_ui.core.Event)`). The
channel keeps no history: a client that joins mid-cycle should skip events until the
next `RUN_STARTED` (AG-UI clients refuse a run that does not open with one), and a seq
gap means the current run is incomplete.

A run nobody listens to is not built: whether the bus would deliver anything on
`agent:{agent_id}` (`EventBus.listening`) is asked once, when the run opens, and a
run that opened unheard stays silent to its end, as a client joining mid-run would
skip it anyway. The checks on the order of calls apply all the same.

A run may be part of another (a coordination: services/agents/coordinator.py). Such a
run is opened with `parent`: its RUN_STARTED names the parent's run as `parentRunId`,
and each of its steps and messages is mirrored into the parent run, the step names
prefixed with `label` ("Ann: model"), so a subscriber of the parent's channel sees
every member's steps inside the one run it follows. `own_channel=False` keeps the run
off its own channel (it would interleave with the parent's there, when both are on
the same agent's channel): it is then seen through the parent only.

Publishing is best effort: a failed publish is logged, counted and dropped, so a dead
bus never breaks a trading cycle. Misuse is not: steps, messages and `finished` before
`started`, any event after the run ended, `finished` with a step still open, or a
second `started` raise RuntimeError. `failed` is accepted before `started` (AG-UI lets
a stream open with `RUN_ERROR`), so an error path never masks the error it reports.
One task drives a RunStream; a parent run's mirrored steps may come from its child
runs' tasks at once, each under its own label.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from enum import Enum
from functools import partial
from typing import Any

import structlog
from ag_ui.core import (
    PROTOCOL_VERSION,
    BaseEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)

from models.events import EventType, agent_channel
from services.infra.event_bus import EventBus

log = structlog.get_logger(__name__)

AGENT_RUN_EVENT = EventType.AGENT_RUN


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RunStream:
    """One decision cycle as AG-UI events on channel agent:{agent_id}."""

    def __init__(
        self,
        bus: EventBus,
        *,
        agent_id: uuid.UUID,
        user_id: uuid.UUID,
        run_id: uuid.UUID | None = None,
        thread_id: str | None = None,
        parent: RunStream | None = None,
        label: str | None = None,
        own_channel: bool = True,
    ) -> None:
        if parent is not None and not label:
            raise ValueError("a run inside another needs a label for its steps there")
        self._bus = bus
        self._channel = agent_channel(agent_id)
        self._agent_id = agent_id
        self._user_id = user_id
        self._run_id = run_id or uuid.uuid4()
        self._thread_id = thread_id if thread_id is not None else str(agent_id)
        self._state = _State.NEW
        self._open_steps: list[str] = []
        self._heard = False
        self._parent = parent
        self._label = label or ""
        self._own_channel = own_channel
        self.publish_failures = 0

    @property
    def run_id(self) -> uuid.UUID:
        return self._run_id

    @property
    def thread_id(self) -> str:
        return self._thread_id

    async def started(self, *, input: Mapping[str, Any] | None = None) -> None:
        """Opens the run; `input` (the cycle's inputs) travels as the run input's forwardedProps."""
        self._require(_State.NEW, "started")
        self._heard = self._listened()
        self._state = _State.RUNNING

        def event() -> BaseEvent:
            run_input = None
            if input is not None:
                # RUN_STARTED.input is a whole RunAgentInput; the cycle's own inputs are
                # application data, which the protocol carries in forwardedProps.
                run_input = RunAgentInput(
                    thread_id=self._thread_id,
                    run_id=str(self._run_id),
                    messages=[],
                    forwarded_props=dict(input),
                )
            return RunStartedEvent(
                thread_id=self._thread_id,
                run_id=str(self._run_id),
                parent_run_id=str(self._parent.run_id) if self._parent is not None else None,
                protocol_version=PROTOCOL_VERSION,
                input=run_input,
                timestamp=_now_ms(),
            )

        await self._emit(event)

    def step(self, name: str) -> AbstractAsyncContextManager[None]:
        """STEP_STARTED on enter, STEP_FINISHED on exit, also when the block raises."""
        return self._step(name)

    @asynccontextmanager
    async def _step(self, name: str) -> AsyncIterator[None]:
        self._require(_State.RUNNING, "step")
        if name in self._open_steps:
            # AG-UI clients identify a step by its name and refuse a second open one.
            raise RuntimeError(f"step {name!r} is already open")
        self._open_steps.append(name)
        await self._emit(lambda: StepStartedEvent(step_name=name, timestamp=_now_ms()))
        try:
            async with self._in_parent(name):
                yield
        finally:
            self._open_steps.remove(name)
            # After RUN_ERROR nothing may follow; the error already closed every step.
            if self._state is _State.RUNNING:
                await self._emit(lambda: StepFinishedEvent(step_name=name, timestamp=_now_ms()))

    async def message(self, text: str, *, chunk_chars: int = 400) -> str:
        """Streams `text` as one assistant message in deltas of at most chunk_chars; its id."""
        if chunk_chars < 1:
            raise ValueError("chunk_chars must be >= 1")
        self._require(_State.RUNNING, "message")
        message_id = str(uuid.uuid4())
        if self._parent is not None and self._parent.running:
            await self._parent.message(f"{self._label}: {text}", chunk_chars=chunk_chars)
        if not self._heard:
            return message_id
        await self._emit(
            lambda: TextMessageStartEvent(
                message_id=message_id, role="assistant", timestamp=_now_ms()
            )
        )
        for start in range(0, len(text), chunk_chars):
            await self._emit(
                partial(
                    TextMessageContentEvent,
                    message_id=message_id,
                    delta=text[start : start + chunk_chars],
                    timestamp=_now_ms(),
                )
            )
        await self._emit(lambda: TextMessageEndEvent(message_id=message_id, timestamp=_now_ms()))
        return message_id

    async def finished(self, result: Mapping[str, Any] | None = None) -> None:
        """Closes the run as done; refused while a step is open."""
        self._require(_State.RUNNING, "finished")
        if self._open_steps:
            raise RuntimeError(f"cannot finish the run with open steps: {self._open_steps}")
        self._state = _State.FINISHED
        await self._emit(
            lambda: RunFinishedEvent(
                thread_id=self._thread_id,
                run_id=str(self._run_id),
                result=None if result is None else dict(result),
                timestamp=_now_ms(),
            )
        )

    async def failed(self, message: str, *, code: str | None = None) -> None:
        """Closes the run as failed; allowed before `started` too."""
        if self._state in (_State.FINISHED, _State.FAILED):
            raise RuntimeError(f"failed after the run already {self._state.value}")
        if self._state is _State.NEW:
            self._heard = self._listened()
        self._state = _State.FAILED
        await self._emit(lambda: RunErrorEvent(message=message, code=code, timestamp=_now_ms()))

    @property
    def running(self) -> bool:
        return self._state is _State.RUNNING

    def _listened(self) -> bool:
        return self._own_channel and self._bus.listening(self._channel)

    def _in_parent(self, name: str) -> AbstractAsyncContextManager[None]:
        """The step mirrored into the parent run, while that run is open."""
        if self._parent is None or not self._parent.running:
            return nullcontext()
        return self._parent.step(f"{self._label}: {name}")

    def _require(self, state: _State, what: str) -> None:
        if self._state is not state:
            raise RuntimeError(f"{what} is not allowed when the run is {self._state.value}")

    async def _emit(self, build: Callable[[], BaseEvent]) -> None:
        if not self._heard:
            return
        event = build()
        # The same dict the package's encoder writes: its base model already omits optional
        # fields without a value, and exclude_none would also drop meaningful nulls.
        data = event.model_dump(mode="json", by_alias=True)
        try:
            await self._bus.publish(self._channel, AGENT_RUN_EVENT, data, user_id=self._user_id)
        except Exception as e:
            self.publish_failures += 1
            log.warning(
                "agent_run_publish_failed",
                agent_id=str(self._agent_id),
                run_id=str(self._run_id),
                event_type=event.type.value,
                error=type(e).__name__,
            )
