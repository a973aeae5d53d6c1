"""RunStream: a decision cycle as AG-UI events on the real in-process bus."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from ag_ui.core import PROTOCOL_VERSION, Event, EventType
from ag_ui.encoder import EventEncoder
from pydantic import TypeAdapter

from models.events import Event as BusEvent
from services.agents.run_stream import AGENT_RUN_EVENT, RunStream
from services.infra.event_bus import InProcessEventBus

AGUI_EVENT: TypeAdapter[Event] = TypeAdapter(Event)

AGENT = uuid.UUID("3f2b8c1e-0d4a-4e6b-9c7d-5a1f2e3d4c5b")
USER = uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")


class FlakyBus(InProcessEventBus):
    """An in-process bus whose publish raises for the event types in `fail_on` (all if None)."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on

    async def publish(
        self,
        channel: str,
        event_type: str,
        data: Mapping[str, Any],
        *,
        user_id: uuid.UUID | None = None,
    ) -> int:
        if self.fail_on is None or data["type"] in self.fail_on:
            raise ConnectionError("bus is down")
        return await super().publish(channel, event_type, data, user_id=user_id)


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus()
    await bus.start()
    yield bus
    await bus.stop()


def record(bus: InProcessEventBus) -> list[BusEvent]:
    seen: list[BusEvent] = []
    bus.subscribe(seen.append)
    return seen


def agui(seen: list[BusEvent]) -> list[dict[str, Any]]:
    """The AG-UI events, in order: the `data` of every envelope."""
    return [e.envelope()["data"] for e in seen]


def types(seen: list[BusEvent]) -> list[str]:
    return [data["type"] for data in agui(seen)]


def make_stream(bus: InProcessEventBus, **kwargs: Any) -> RunStream:
    return RunStream(bus, agent_id=AGENT, user_id=USER, **kwargs)


async def full_cycle(stream: RunStream, reasoning: str) -> str:
    await stream.started(input={"symbols": ["BTC/USDT"], "trigger": "schedule"})
    async with stream.step("gather_context"):
        pass
    async with stream.step("decide"):
        message_id = await stream.message(reasoning, chunk_chars=4)
    await stream.finished({"action": "buy", "quantity": "0.5"})
    return message_id


class TestFullCycle:
    async def test_emits_the_cycle_in_order(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        await full_cycle(make_stream(bus), "Momentum up.")

        assert types(seen) == [
            "RUN_STARTED",
            "STEP_STARTED",
            "STEP_FINISHED",
            "STEP_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "STEP_FINISHED",
            "RUN_FINISHED",
        ]
        steps = [(d["type"], d["stepName"]) for d in agui(seen) if "stepName" in d]
        assert steps == [
            ("STEP_STARTED", "gather_context"),
            ("STEP_FINISHED", "gather_context"),
            ("STEP_STARTED", "decide"),
            ("STEP_FINISHED", "decide"),
        ]

    async def test_each_event_is_an_agent_run_envelope_for_the_owner(
        self, bus: InProcessEventBus
    ) -> None:
        seen = record(bus)
        await full_cycle(make_stream(bus), "Momentum up.")

        assert {(e.channel, e.type, e.user_id) for e in seen} == {
            (f"agent:{AGENT}", AGENT_RUN_EVENT, USER)
        }
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))

    async def test_run_events_share_run_and_thread_ids(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await full_cycle(stream, "Momentum up.")

        started, finished = agui(seen)[0], agui(seen)[-1]
        ids = {"runId": str(stream.run_id), "threadId": str(AGENT)}
        assert {k: started[k] for k in ids} == ids
        assert {k: finished[k] for k in ids} == ids
        assert {k: started["input"][k] for k in ids} == ids
        assert finished["result"] == {"action": "buy", "quantity": "0.5"}

    async def test_started_declares_protocol_version_and_carries_the_input(
        self, bus: InProcessEventBus
    ) -> None:
        seen = record(bus)
        await make_stream(bus).started(input={"symbols": ["BTC/USDT"]})

        (started,) = agui(seen)
        assert started["protocolVersion"] == PROTOCOL_VERSION
        assert started["input"]["forwardedProps"] == {"symbols": ["BTC/USDT"]}
        assert started["input"]["messages"] == []

    async def test_started_without_input_leaves_it_out(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        await make_stream(bus).started()
        assert "input" not in agui(seen)[0]

    async def test_message_chunks_concatenate_to_the_text(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        reasoning = "RSI 71 → overbought; trimming 25 % of the position. ✓"
        message_id = await full_cycle(stream, reasoning)

        messages = [d for d in agui(seen) if d["type"].startswith("TEXT_MESSAGE")]
        assert {d["messageId"] for d in messages} == {message_id}
        assert messages[0]["role"] == "assistant"
        deltas = [d["delta"] for d in messages if d["type"] == "TEXT_MESSAGE_CONTENT"]
        assert "".join(deltas) == reasoning
        assert all(1 <= len(delta) <= 4 for delta in deltas)

    async def test_empty_message_has_no_content_events(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        await stream.message("")
        assert types(seen)[1:] == ["TEXT_MESSAGE_START", "TEXT_MESSAGE_END"]

    async def test_chunk_size_below_one_is_refused(self, bus: InProcessEventBus) -> None:
        stream = make_stream(bus)
        await stream.started()
        with pytest.raises(ValueError, match="chunk_chars"):
            await stream.message("hold", chunk_chars=0)

    async def test_every_event_parses_as_an_agui_event(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        await full_cycle(make_stream(bus), "Momentum up.")

        encoder = EventEncoder()
        for data in agui(seen):
            parsed = AGUI_EVENT.validate_python(data)
            assert parsed.type == EventType(data["type"])
            # Byte for byte what the package's own SSE encoder would send for the event.
            frame = encoder.encode(parsed)
            assert json.loads(frame.removeprefix("data: ")) == data

    async def test_timestamps_are_milliseconds_since_the_epoch(
        self, bus: InProcessEventBus
    ) -> None:
        seen = record(bus)
        before = time.time_ns() // 1_000_000
        await full_cycle(make_stream(bus), "Momentum up.")
        after = time.time_ns() // 1_000_000

        stamps = [d["timestamp"] for d in agui(seen)]
        assert all(before <= t <= after for t in stamps)
        assert stamps == sorted(stamps)

    async def test_ids_can_be_given(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        run_id = uuid.uuid4()
        stream = make_stream(bus, run_id=run_id, thread_id="desk-7")
        await stream.started()

        assert stream.run_id == run_id
        assert (agui(seen)[0]["runId"], agui(seen)[0]["threadId"]) == (str(run_id), "desk-7")

    async def test_each_stream_is_a_new_run_on_the_agent_thread(
        self, bus: InProcessEventBus
    ) -> None:
        one, two = make_stream(bus), make_stream(bus)
        assert one.run_id != two.run_id
        assert one.thread_id == two.thread_id == str(AGENT)


class TestStep:
    async def test_raising_block_still_finishes_the_step_and_reraises(
        self, bus: InProcessEventBus
    ) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        with pytest.raises(ZeroDivisionError):
            async with stream.step("size_position"):
                _ = 1 / 0

        assert [(d["type"], d.get("stepName")) for d in agui(seen)] == [
            ("RUN_STARTED", None),
            ("STEP_STARTED", "size_position"),
            ("STEP_FINISHED", "size_position"),
        ]
        await stream.failed("sizing failed")
        assert types(seen)[-1] == "RUN_ERROR"

    async def test_steps_nest(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        async with stream.step("decide"), stream.step("ask_model"):
            pass
        await stream.finished()

        assert [(d["type"], d.get("stepName")) for d in agui(seen)][1:-1] == [
            ("STEP_STARTED", "decide"),
            ("STEP_STARTED", "ask_model"),
            ("STEP_FINISHED", "ask_model"),
            ("STEP_FINISHED", "decide"),
        ]

    async def test_a_step_name_already_open_is_refused(self, bus: InProcessEventBus) -> None:
        stream = make_stream(bus)
        await stream.started()
        async with stream.step("decide"):
            with pytest.raises(RuntimeError, match="already open"):
                async with stream.step("decide"):
                    pass

    async def test_step_name_can_be_reused_once_closed(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        for _ in range(2):
            async with stream.step("retry"):
                pass
        assert types(seen)[1:] == ["STEP_STARTED", "STEP_FINISHED"] * 2


class TestFailed:
    async def test_run_error_carries_message_and_code(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        await stream.failed("model timed out", code="llm_timeout")

        error = agui(seen)[-1]
        assert error == {
            "type": "RUN_ERROR",
            "timestamp": error["timestamp"],
            "message": "model timed out",
            "code": "llm_timeout",
        }
        AGUI_EVENT.validate_python(error)

    async def test_code_is_optional(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        await stream.failed("boom")
        assert "code" not in agui(seen)[-1]

    async def test_failing_inside_a_step_ends_the_run_there(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()

        async def decide() -> None:
            async with stream.step("decide"):
                await stream.failed("model timed out")
                raise TimeoutError

        with pytest.raises(TimeoutError):
            await decide()

        # Nothing may follow RUN_ERROR, so the step is not closed after it.
        assert types(seen) == ["RUN_STARTED", "STEP_STARTED", "RUN_ERROR"]

    async def test_failed_before_started_is_a_lone_run_error(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        await make_stream(bus).failed("could not load the agent")
        assert types(seen) == ["RUN_ERROR"]


class TestDeadBus:
    async def test_a_bus_that_always_fails_does_not_break_the_cycle(self) -> None:
        bus = FlakyBus()
        record(bus)
        stream = RunStream(bus, agent_id=AGENT, user_id=USER)

        message_id = await full_cycle(stream, "Momentum up.")

        assert uuid.UUID(message_id)
        assert stream.publish_failures == 11
        assert bus.published == 0

    async def test_events_after_a_failed_publish_still_go_out(self) -> None:
        bus = FlakyBus(fail_on={"STEP_STARTED"})
        seen = record(bus)
        stream = RunStream(bus, agent_id=AGENT, user_id=USER)

        await full_cycle(stream, "Momentum up.")

        assert stream.publish_failures == 2
        assert "STEP_STARTED" not in types(seen)
        assert types(seen)[0] == "RUN_STARTED"
        assert types(seen)[-1] == "RUN_FINISHED"

    async def test_a_failed_publish_still_advances_the_run(self) -> None:
        stream = RunStream(FlakyBus(), agent_id=AGENT, user_id=USER)
        await stream.started()
        await stream.finished()
        with pytest.raises(RuntimeError):
            await stream.finished()


class TestNobodyListening:
    async def test_a_run_nobody_hears_publishes_nothing(self, bus: InProcessEventBus) -> None:
        seen: list[BusEvent] = []
        bus.subscribe(seen.append, wants=lambda _channel: False)
        stream = make_stream(bus)

        message_id = await full_cycle(stream, "Momentum up.")

        assert uuid.UUID(message_id)
        assert bus.published == 0
        assert seen == []
        with pytest.raises(RuntimeError):
            await stream.finished()

    async def test_a_listener_on_the_agent_channel_hears_the_run(
        self, bus: InProcessEventBus
    ) -> None:
        seen: list[BusEvent] = []
        bus.subscribe(seen.append, wants=lambda channel: channel == f"agent:{AGENT}")

        await full_cycle(make_stream(bus), "Momentum up.")

        assert types(seen)[0] == "RUN_STARTED"
        assert types(seen)[-1] == "RUN_FINISHED"

    async def test_whether_a_run_is_heard_is_settled_when_it_starts(
        self, bus: InProcessEventBus
    ) -> None:
        heard: set[str] = set()
        seen: list[BusEvent] = []
        bus.subscribe(seen.append, wants=heard.__contains__)
        quiet = make_stream(bus)
        await quiet.started()
        heard.add(f"agent:{AGENT}")  # a client joins mid-run: it waits for the next one
        async with quiet.step("decide"):
            pass
        await quiet.finished()
        assert seen == []

        await full_cycle(make_stream(bus), "Momentum up.")
        assert types(seen)[0] == "RUN_STARTED"

    async def test_a_lone_run_error_asks_too(self, bus: InProcessEventBus) -> None:
        seen: list[BusEvent] = []
        bus.subscribe(seen.append, wants=lambda _channel: False)
        await make_stream(bus).failed("could not load the agent")
        assert seen == []


class TestMisuse:
    async def test_step_before_started_is_refused(self, bus: InProcessEventBus) -> None:
        with pytest.raises(RuntimeError, match="new"):
            async with make_stream(bus).step("decide"):
                pass

    async def test_message_before_started_is_refused(self, bus: InProcessEventBus) -> None:
        with pytest.raises(RuntimeError, match="new"):
            await make_stream(bus).message("hello")

    async def test_finished_before_started_is_refused(self, bus: InProcessEventBus) -> None:
        with pytest.raises(RuntimeError, match="new"):
            await make_stream(bus).finished()

    async def test_started_twice_is_refused(self, bus: InProcessEventBus) -> None:
        stream = make_stream(bus)
        await stream.started()
        with pytest.raises(RuntimeError, match="running"):
            await stream.started()

    async def test_finished_with_an_open_step_is_refused(self, bus: InProcessEventBus) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        async with stream.step("decide"):
            with pytest.raises(RuntimeError, match="open steps"):
                await stream.finished()
        await stream.finished()
        assert types(seen)[-2:] == ["STEP_FINISHED", "RUN_FINISHED"]

    @pytest.mark.parametrize("end", ["finished", "failed"])
    async def test_nothing_is_accepted_after_the_run_ended(
        self, bus: InProcessEventBus, end: str
    ) -> None:
        seen = record(bus)
        stream = make_stream(bus)
        await stream.started()
        if end == "finished":
            await stream.finished()
        else:
            await stream.failed("boom")
        published = len(seen)

        with pytest.raises(RuntimeError, match=end):
            await stream.started()
        with pytest.raises(RuntimeError, match=end):
            async with stream.step("decide"):
                pass
        with pytest.raises(RuntimeError, match=end):
            await stream.message("late")
        with pytest.raises(RuntimeError, match=end):
            await stream.finished()
        with pytest.raises(RuntimeError, match=end):
            await stream.failed("again")
        assert len(seen) == published
