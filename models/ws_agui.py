"""The AG-UI events an agent's decision cycle streams on `agent:{id}`, as the /ws
protocol documents them: ag-ui-protocol's own models, closed to unknown fields at their
top level (models/ws_protocol.py's `AgentRunEvent` carries one as its `data`)."""

from __future__ import annotations

from typing import Annotated

from ag_ui.core import (
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)
from pydantic import ConfigDict, Field

_AG_UI_CLOSED = ConfigDict(extra="forbid")


class AgUiRunStarted(RunStartedEvent):
    """RUN_STARTED: a decision cycle opened. `threadId` is the agent's id, `runId` the
    cycle's; `input.forwardedProps` holds the cycle's inputs (`{"trigger": ...}`)."""

    model_config = _AG_UI_CLOSED


class AgUiStepStarted(StepStartedEvent):
    """STEP_STARTED: a step of the cycle began (context, model, risk_check, execution)."""

    model_config = _AG_UI_CLOSED


class AgUiStepFinished(StepFinishedEvent):
    """STEP_FINISHED: that step ended (also when it failed)."""

    model_config = _AG_UI_CLOSED


class AgUiTextMessageStart(TextMessageStartEvent):
    """TEXT_MESSAGE_START: the agent's reasoning begins, as an assistant message."""

    model_config = _AG_UI_CLOSED


class AgUiTextMessageContent(TextMessageContentEvent):
    """TEXT_MESSAGE_CONTENT: a piece of the reasoning (at most 400 characters)."""

    model_config = _AG_UI_CLOSED


class AgUiTextMessageEnd(TextMessageEndEvent):
    """TEXT_MESSAGE_END: the reasoning is complete."""

    model_config = _AG_UI_CLOSED


class AgUiRunFinished(RunFinishedEvent):
    """RUN_FINISHED: the cycle ended; `result` is `{"decision_id", "status"}`, or
    `{"skipped": reason}` when another instance had decided moments before."""

    model_config = _AG_UI_CLOSED


class AgUiRunError(RunErrorEvent):
    """RUN_ERROR: the cycle failed; `code` is `cycle_failed` or the error's code
    (`agent_budget_spent`)."""

    model_config = _AG_UI_CLOSED


AgentRunData = Annotated[
    AgUiRunStarted
    | AgUiStepStarted
    | AgUiStepFinished
    | AgUiTextMessageStart
    | AgUiTextMessageContent
    | AgUiTextMessageEnd
    | AgUiRunFinished
    | AgUiRunError,
    Field(discriminator="type"),
]
"""The AG-UI events a decision cycle emits (ag-ui-protocol's models, camelCase keys,
optional fields without a value left out), closed to unknown fields."""
