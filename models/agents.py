"""Agents, their status and their decision log, as the API takes and shows them.

Field names follow the seed API (name, type, personality, strategies, risk_tolerance,
max_position_size, paper_balance, llm_provider, llm_model, symbols). The position
limit is stored as a percent of the agent's equity: `max_position_pct`, accepted as
`max_position_size` too; the type is `agent_type`, accepted as `type` too.

The personality is free-form as in the seed (a JSON object): the typed traits below,
plus up to 20 more of the user's own, each one text, number or boolean. All of it is
stored with the agent, returned on read and given to the model in its prompt.

`PUT` takes the agent as `POST` created it or as `GET` returned it: fields that cannot
change (agent_type, paper_balance, id, account_id) pass when unchanged, read-only ones
(status, stats, timestamps) are ignored.
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.base import AppModel, DecimalStr, InputModel, IsoDatetime, decimal_to_str
from models.decision_reads import DecisionRead as DecisionRead
from models.decision_reads import LLMCallRead as LLMCallRead
from models.decision_reads import ModelRef as ModelRef
from models.decisions import Decision
from models.enums import ActionTaken, AgentStatus, DecisionStatus, DecisionType


def _storable(value: str) -> str:
    """PostgreSQL cannot store NUL in text or JSON, so it is refused here, with its field."""
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain the NUL character (\\u0000)")
    return value


Storable = AfterValidator(_storable)
# Amounts are stored with 18 decimals (database/orm/types.py, MONEY_SCALE): more would be
# rounded on the way in, and 1e-30 would become 0 and break the positive checks.
_PLACES = 18
Name = Annotated[str, Field(min_length=1, max_length=100), Storable]
AgentType = Annotated[str, Field(min_length=1, max_length=50), Storable]
Percent = Annotated[DecimalStr, Field(gt=0, le=100, allow_inf_nan=False, decimal_places=_PLACES)]
Unit = Annotated[DecimalStr, Field(ge=0, le=1, allow_inf_nan=False, decimal_places=_PLACES)]
Balance = Annotated[
    DecimalStr, Field(gt=0, lt=Decimal(10) ** 12, allow_inf_nan=False, decimal_places=_PLACES)
]
Budget = Annotated[
    DecimalStr, Field(ge=0, lt=Decimal(10) ** 9, allow_inf_nan=False, decimal_places=_PLACES)
]
Interval = Annotated[int, Field(ge=5, le=86_400, description="Seconds between decisions.")]
StrategyName = Annotated[str, Field(min_length=1, max_length=100), Storable]
SymbolName = Annotated[str, Field(min_length=1, max_length=32, examples=["BTC/USD"]), Storable]
ProviderName = Annotated[str, Field(min_length=1, max_length=32), Storable]
ModelName = Annotated[str, Field(min_length=1, max_length=200), Storable]
_TOKENS = "Most prompt + completion tokens per UTC day (null: no cap); needed on an unpriced model."
TokenBudget = Annotated[int, Field(ge=1, le=10**12, description=_TOKENS)]
MAX_FALLBACKS = 3

# -- personality -----------------------------------------------------------------------

MAX_EXTRA_TRAITS = 20
MAX_TRAIT_NAME = 50
MAX_TRAIT_TEXT = 500
_AGGRESSION_WORDS = ("low", "medium", "high")
_UNIT: TypeAdapter[Decimal] = TypeAdapter(Unit)


def _aggression(value: Any) -> Decimal | str:
    if isinstance(value, str) and value.strip().lower() in _AGGRESSION_WORDS:
        return value.strip().lower()
    try:
        return _UNIT.validate_python(value)
    except ValidationError:
        raise PydanticCustomError(
            "aggression", "must be a number from 0 to 1, or one of low, medium, high"
        ) from None


def _aggression_out(value: Decimal | str) -> str:
    return decimal_to_str(value) if isinstance(value, Decimal) else value


Aggression = Annotated[
    Decimal | str,
    PlainValidator(_aggression),
    PlainSerializer(_aggression_out, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "decimal", "examples": ["0.7"]},
                {"type": "number", "minimum": 0, "maximum": 1},
                {"type": "string", "enum": list(_AGGRESSION_WORDS)},
            ]
        }
    ),
]


def _not_text(value: str) -> str | None:
    """Why `value` cannot be stored as text (a lone surrogate, NUL), or None."""
    if "\x00" in value:
        return "contains the NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (a lone surrogate)"
    return None


def _trait(value: Any) -> str | int | float | bool:
    """One extra trait: text, a number kept exactly, or a boolean; nothing nested."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TRAIT_TEXT:
            raise PydanticCustomError(
                "trait_too_long",
                "a text trait has at most {max} characters",
                {"max": MAX_TRAIT_TEXT},
            )
        problem = _not_text(text)
        if problem is not None:
            raise PydanticCustomError("trait_text", f"the text {problem}")
        return text
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise PydanticCustomError(
                "trait_number", "the number is too large to keep exactly; send it as a string"
            )
        return value
    if isinstance(value, float | Decimal):
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            raise PydanticCustomError("trait_number", "the number must be finite")
        number = float(value)
        exact = isinstance(value, float) or Decimal(repr(number)) == value
        if not math.isfinite(number) or not exact:
            raise PydanticCustomError(
                "trait_number",
                "the number cannot be kept exactly (too large, too small or too many digits); "
                "send it as a string",
            )
        return number
    if value is None:
        raise PydanticCustomError("trait_null", "a trait cannot be null; leave it out instead")
    kind = "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else None
    raise PydanticCustomError(
        "trait_nested",
        "a trait is one text, number or boolean, not {kind}; give each part its own trait",
        {"kind": kind or type(value).__name__},
    )


Trait = Annotated[
    str | int | float | bool,
    PlainValidator(_trait),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_TRAIT_TEXT},
                {"type": "number"},
                {"type": "boolean"},
            ]
        }
    ),
]


def _bad_trait_name(name: str) -> str | None:
    if not name.strip():
        return "a trait needs a name"
    if len(name) > MAX_TRAIT_NAME:
        return f"trait name {name[:MAX_TRAIT_NAME]!r}... is longer than {MAX_TRAIT_NAME} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        return f"trait name {name!r} contains a control character or a lone surrogate"
    return None


class Personality(InputModel):
    """How the agent behaves, all of it given to the model. `aggression` 0..1 (or low /
    medium / high) also lowers the signal strength the built-in `local` provider acts
    on and raises its order sizes. Up to 20 more traits of your own (e.g. `"patience":
    "0.4"`, `"analysis_depth": "high"`), each one text (at most 500 characters), number
    or boolean; names at most 50 characters."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "maxProperties": 4 + MAX_EXTRA_TRAITS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_TRAIT_NAME},
        },
    )
    __pydantic_extra__: dict[str, Trait] = Field(init=False)

    description: str | None = Field(default=None, max_length=2000)
    style: str | None = Field(default=None, max_length=100, examples=["trend follower"])
    aggression: Aggression | None = None
    time_horizon: Literal["scalp", "intraday", "swing", "position"] | None = None

    @field_validator("description", "style")
    @classmethod
    def _storable_text(cls, value: str | None) -> str | None:
        return _storable(value) if value is not None else None

    @model_validator(mode="before")
    @classmethod
    def _bounded_traits(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        extra = [name for name in data if name not in cls.model_fields]
        if len(extra) > MAX_EXTRA_TRAITS:
            raise PydanticCustomError(
                "too_many_traits",
                "at most {max} traits besides description, style, aggression and "
                "time_horizon; got {count}",
                {"max": MAX_EXTRA_TRAITS, "count": len(extra)},
            )
        for name in extra:
            problem = _bad_trait_name(str(name))
            if problem is not None:
                raise PydanticCustomError("trait_name", "{problem}", {"problem": problem})
        return data

    def stored(self) -> dict[str, Any]:
        """As kept with the agent (JSON): the traits that are set, typed ones first."""
        return self.model_dump(mode="json", exclude_none=True)


class AgentStats(AppModel):
    """Follows the agent's paper account."""

    equity: DecimalStr
    total_pnl: DecimalStr
    realized_pnl: DecimalStr
    unrealized_pnl: DecimalStr
    fees: DecimalStr
    trades_count: int
    winning_trades: int
    losing_trades: int
    win_rate: DecimalStr | None


# -- create and update -------------------------------------------------------------------


class FallbackModel(InputModel):
    """A model asked when the ones before it fail; checked like the agent's own."""

    provider: ProviderName
    model: ModelName


# The seed API's names, accepted too; errors name the field as it was sent.
_SEED_NAMES = {"max_position_pct": "max_position_size", "agent_type": "type"}
_POSITION_LIMIT = AliasChoices("max_position_pct", "max_position_size")
_TYPE = AliasChoices("agent_type", "type")


class _AgentFields(InputModel):
    # The field names are the first of their AliasChoices; said here for the mypy plugin.
    model_config = ConfigDict(validate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _one_name_each(cls, data: Any) -> Any:
        """`max_position_size` is `max_position_pct` and `type` is `agent_type`: one each."""
        if isinstance(data, dict):
            for ours, seed in _SEED_NAMES.items():
                if ours in data and seed in data:
                    raise PydanticCustomError(
                        "both_names",
                        "send {ours} or {seed}, not both",
                        {"ours": ours, "seed": seed},
                    )
        return data

    @field_validator("symbols", "strategies", check_fields=False)
    @classmethod
    def _no_repeats(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len({v.upper() for v in value}) != len(value):
            raise ValueError("names an entry twice")
        return value


class AgentCreate(_AgentFields):
    name: Name
    agent_type: AgentType = Field(
        default="trading",
        validation_alias=_TYPE,
        description="Also accepted as `type` (the seed's name).",
    )
    personality: Personality = Field(default_factory=Personality)
    strategies: list[StrategyName] = Field(
        default_factory=list,
        max_length=20,
        description="Strategy names handed to the model; the built-in `local` provider "
        "knows Moving Average Crossover, RSI Mean Reversion, Bollinger Bands and Momentum "
        "Scanner (none named: all four).",
    )
    symbols: list[SymbolName] = Field(min_length=1, max_length=20, examples=[["BTC/USD"]])
    risk_tolerance: Unit = Decimal("0.5")
    max_position_pct: Percent = Field(
        default=Decimal(10),
        validation_alias=_POSITION_LIMIT,
        description="Largest position, in percent of the agent's equity (also accepted as "
        "`max_position_size`).",
    )
    paper_balance: Balance = Field(
        default=Decimal(10000), description="Starting cash of the agent's own paper account."
    )
    llm_provider: ProviderName | None = Field(
        default=None,
        description="local, openai, anthropic, openrouter or openai_compatible; default "
        "(null or absent): the first configured, else local.",
    )
    llm_model: ModelName | None = Field(
        default=None, description="Default (null or absent): the provider's default model."
    )
    decision_interval_seconds: Interval = 300
    daily_cost_budget: Budget = Field(
        default=Decimal(1), description="USD the agent's model calls may cost per UTC day."
    )
    daily_token_budget: TokenBudget | None = None
    llm_fallbacks: list[FallbackModel] = Field(
        default_factory=list,
        max_length=MAX_FALLBACKS,
        description="Models asked in order when the main one gives no decision.",
    )


def _read_only(description: str = "Read-only: ignored, so an agent read can be sent back.") -> Any:
    return Field(default=None, description=description, json_schema_extra={"readOnly": True})


class AgentUpdate(_AgentFields):
    """Only the fields sent change; absent or null means unchanged, and a new
    `personality` replaces the old one whole. The agent as created or as read is
    accepted: `agent_type` and `paper_balance` cannot change after creation (sent
    unchanged they pass, changed they are refused with what to do instead); `id` and
    `account_id`, when sent, must be this agent's; status, stats and timestamps are
    read-only and ignored (use start and stop to change the status)."""

    # Checked against the agent by the service: equal passes, different is a 422.
    FIXED: ClassVar[tuple[str, ...]] = ("id", "account_id", "agent_type", "paper_balance")
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "status",
        "status_reason",
        "last_decision_at",
        "created_at",
        "updated_at",
        "stats",
        "paused_until",
    )

    name: Name | None = None
    personality: Personality | None = None
    strategies: list[StrategyName] | None = Field(default=None, max_length=20)
    symbols: list[SymbolName] | None = Field(default=None, min_length=1, max_length=20)
    risk_tolerance: Unit | None = None
    max_position_pct: Percent | None = Field(
        default=None,
        validation_alias=_POSITION_LIMIT,
        description="Also accepted as `max_position_size`.",
    )
    llm_provider: ProviderName | None = Field(
        default=None,
        description="A different provider without `llm_model` takes that provider's default model.",
    )
    llm_model: ModelName | None = None
    decision_interval_seconds: Interval | None = None
    daily_cost_budget: Budget | None = None
    daily_token_budget: TokenBudget | None = None
    llm_fallbacks: list[FallbackModel] | None = Field(
        default=None,
        max_length=MAX_FALLBACKS,
        description="Replaces the fallback chain whole; [] removes it.",
    )

    agent_type: AgentType | None = Field(
        default=None,
        validation_alias=_TYPE,
        description="Fixed at creation: accepted unchanged only (also as `type`).",
    )
    paper_balance: Balance | None = Field(
        default=None, description="Fixed at creation: accepted unchanged only."
    )
    id: uuid.UUID | None = _read_only("Read-only; when sent, must be this agent's id.")
    account_id: uuid.UUID | None = _read_only("Read-only; when sent, must be this agent's account.")
    status: AgentStatus | None = _read_only("Read-only: ignored; change it with /start and /stop.")
    status_reason: str | None = _read_only()
    last_decision_at: datetime | None = _read_only()
    created_at: datetime | None = _read_only()
    updated_at: datetime | None = _read_only()
    stats: AgentStats | None = _read_only()
    paused_until: datetime | None = _read_only()

    def changes(self) -> dict[str, Any]:
        """The editable fields sent with a value, by name (fixed and read-only ones left
        out: the service checks the fixed ones against the agent)."""
        skipped = {*self.FIXED, *self.READ_ONLY}
        return {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name not in skipped and getattr(self, name) is not None
        }


_PAUSED_UNTIL = "When a budget pause lifts itself (the next UTC midnight); null otherwise."


class AgentRead(AppModel):
    id: uuid.UUID
    name: str
    agent_type: str
    status: AgentStatus
    status_reason: str | None
    personality: dict[str, Any]
    strategies: list[str]
    symbols: list[str]
    risk_tolerance: DecimalStr
    max_position_pct: DecimalStr
    paper_balance: DecimalStr
    llm_provider: str
    llm_model: str
    decision_interval_seconds: int
    daily_cost_budget: DecimalStr
    daily_token_budget: int | None
    llm_fallbacks: list[ModelRef]
    paused_until: datetime | None = Field(description=_PAUSED_UNTIL)
    account_id: uuid.UUID
    last_decision_at: datetime | None
    created_at: datetime
    updated_at: datetime
    stats: AgentStats | None = None


class AgentStatusRead(AppModel):
    id: uuid.UUID
    name: str
    status: AgentStatus
    status_reason: str | None
    last_decision_at: datetime | None
    next_run_at: datetime | None = Field(description="Null unless the agent is active.")
    running: bool = Field(description="A decision cycle is under way now.")
    paused_until: datetime | None = Field(description=_PAUSED_UNTIL)
    cost_today: DecimalStr = Field(description="USD of today's (UTC) calls of known cost.")
    unknown_cost_calls_today: int = Field(description="Today's calls of unknown cost.")
    tokens_today: int = Field(description="Prompt + completion tokens of today's calls.")
    daily_cost_budget: DecimalStr
    daily_token_budget: int | None
    stats: AgentStats


class DecisionDetailRead(DecisionRead):
    llm_call: LLMCallRead | None


def _in_utc(value: datetime) -> datetime:
    """A moment in UTC; one without a zone is taken as UTC, as timestamps are stored."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "is outside the years 1 to 9999 once in UTC"
        ) from None


Moment = Annotated[IsoDatetime, AfterValidator(_in_utc)]


class DecisionQuery(InputModel):
    """Filters of the decision log."""

    decision_type: DecisionType | None = None
    status: DecisionStatus | None = None
    symbol: SymbolName | None = Field(default=None, description="BTC/USD or BTC-USD")
    action_taken: ActionTaken | None = None
    start: Moment | None = Field(
        default=None, description="At or after (ISO 8601; without a zone: UTC)."
    )
    end: Moment | None = Field(default=None, description="Before (ISO 8601; without a zone: UTC).")
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


# What the decision log keeps (database/orm/types.py): amounts below 10^20 with at most
# 18 decimals, and text without NUL.
_AMOUNT_LIMIT = Decimal(10) ** 20


def _decimals(amount: Decimal) -> int:
    """Decimal places of a finite amount, trailing zeros not counted (exactly: no rounding)."""
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def unstorable(decision: Decision) -> list[str]:
    """What in `decision` the decision log could not keep as given: text holding NUL,
    an amount with more than 18 decimals or of 10^20 or more. Empty when it can."""
    problems: list[str] = []
    for name in ("symbol", "reasoning"):
        text = getattr(decision, name)
        if text is not None and "\x00" in text:
            problems.append(f"{name}: must not contain the NUL character (\\u0000)")
    for name in ("quantity", "limit_price", "stop_price", "confidence_score"):
        amount: Decimal | None = getattr(decision, name)
        if amount is None:
            continue
        if amount.copy_abs() >= _AMOUNT_LIMIT:
            problems.append(f"{name}: {decimal_to_str(amount)} is out of range (at most 10^20)")
        elif _decimals(amount) > _PLACES:
            problems.append(f"{name}: has more than {_PLACES} decimal places")
    for weight in decision.target_weights or ():
        if "\x00" in weight.symbol:
            problems.append("target_weights.symbol: must not contain the NUL character (\\u0000)")
    return problems


class ExecuteDecisionRequest(InputModel):
    """Empty: run one cycle now. With `decision`: execute that decision (a human
    override) through the same risk checks and log."""

    decision: Decision | None = None

    @model_validator(mode="after")
    def _storable_decision(self) -> ExecuteDecisionRequest:
        problems = unstorable(self.decision) if self.decision is not None else []
        if problems:
            raise PydanticCustomError(
                "unstorable_decision", "decision.{problem}", {"problem": "; ".join(problems)}
            )
        return self


class CoordinateRequest(InputModel):
    agent_ids: list[uuid.UUID] = Field(min_length=2, max_length=20)
    symbol: SymbolName
    execute: bool = Field(default=False, description="Place the combined decision's order.")
    executor_id: uuid.UUID | None = Field(
        default=None, description="Whose account trades; default the first agent."
    )


class CoordinationRead(AppModel):
    coordination_id: uuid.UUID = Field(
        description="Also the run id of the coordination's AG-UI run on the executor's "
        "channel, and the parentRunId of every other member's run."
    )
    symbol: str
    action: Literal["buy", "sell", "hold"]
    confidence: DecimalStr = Field(
        description="The confidence-weighted agreement with the action: the summed "
        "confidence of the members who voted for it over the number who voted (1 only "
        "when all back it at confidence 1)."
    )
    share: DecimalStr | None = Field(
        description="A trade's size as a share of the executor's account: of its equity "
        "for a buy, of its holding for a sell (the confidence-weighted mean of the "
        "winning members' shares of their own accounts); None for a hold."
    )
    quantity: DecimalStr | None = Field(
        description="The trade's quantity on the executor's account, after its sizing "
        "and risk checks: what the executed cycle planned, or, without `execute`, what "
        "the executor's account as seen during the vote allows; None when nothing "
        "would trade."
    )
    scores: dict[str, DecimalStr]
    vetoed_by: list[str]
    abstained: list[str]
    reasoning: str
    members: list[DecisionRead]
    executed: DecisionRead | None
