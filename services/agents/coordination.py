"""Several agents' views on one symbol combined into one decision: pure, `Decimal` only.

The vote:

- Each member votes with its confidence as weight. A trade on `symbol` votes buy or
  sell by its side; hold, analysis, rebalance and risk_check vote hold, and so does a
  trade on another symbol. A member without a decision (it failed) abstains: it is
  named, and its weight counts nowhere.
- A risk_check with confidence >= `veto_confidence`, on `symbol` or on no symbol
  (portfolio-wide), is a veto on any trade; one on another symbol is not.
- A side wins only when it alone has the highest score and that score is strictly
  more than `quorum` x the total score. A tie at the top, or no quorum, is a hold.
- A buy or sell that wins but is vetoed becomes a hold naming the vetoers
  (`vetoed_by` is filled only then). A winning trade needs a quantity: the
  confidence-weighted mean `sum(conf_i * qty_i) / sum(conf_i)` over the winning
  members that gave one with a confidence above 0; without such a member it is a hold.
- `confidence` is the share of the total score behind the final action (the winning
  side's, or hold's when the result is a hold), rounded to 4 places; 0 when the total
  is 0 (nobody voted, or every vote had confidence 0). `scores` always has buy, sell
  and hold.

`reasoning` explains the result with the numbers. Arithmetic runs in `MONEY_CONTEXT`;
the quantity is exact to its precision (the caller rounds it to the pair's step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, Literal

from models.base import decimal_to_str
from models.decisions import Decision
from models.enums import DecisionType, OrderSide, OrderType
from services.paper_trading.matching import MONEY_CONTEXT

Action = Literal["buy", "sell", "hold"]

VETO_CONFIDENCE = Decimal("0.7")

_ACTIONS: tuple[Action, ...] = ("buy", "sell", "hold")
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_CONFIDENCE_QUANTUM = Decimal("0.0001")
_PCT_QUANTUM = Decimal("0.01")
# Decision.reasoning holds at most this many characters.
_REASONING_MAX = 4000


@dataclass(frozen=True, slots=True)
class MemberView:
    """One member's decision; `quantity` sizes a trade in base units (the caller converts
    a fraction of equity). `decision` None: the member failed and abstains."""

    agent_id: str
    agent_name: str
    decision: Decision | None
    quantity: Decimal | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.quantity is not None and self.quantity <= 0:
            raise ValueError(f"member {self.agent_id}: quantity must be positive")


@dataclass(frozen=True, slots=True)
class Combined:
    symbol: str
    action: Action
    confidence: Decimal
    # Trades only.
    quantity: Decimal | None
    scores: dict[str, Decimal]
    vetoed_by: tuple[str, ...]
    abstained: tuple[str, ...]
    reasoning: str

    def __post_init__(self) -> None:
        if (self.action == "hold") != (self.quantity is None):
            raise ValueError("a buy or sell has a quantity and a hold has none")

    def to_decision(self) -> Decision:
        """A market order of that side and quantity, or a hold; reasoning and confidence
        carried over."""
        reasoning = _clip(self.reasoning)
        if self.action == "hold":
            return Decision(
                decision_type=DecisionType.HOLD,
                symbol=self.symbol,
                reasoning=reasoning,
                confidence_score=self.confidence,
            )
        return Decision(
            decision_type=DecisionType.TRADE,
            symbol=self.symbol,
            side=OrderSide(self.action),
            quantity=self.quantity,
            order_type=OrderType.MARKET,
            reasoning=reasoning,
            confidence_score=self.confidence,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "action": self.action,
            "confidence": decimal_to_str(self.confidence),
            "quantity": decimal_to_str(self.quantity) if self.quantity is not None else None,
            "scores": {action: decimal_to_str(score) for action, score in self.scores.items()},
            "vetoed_by": list(self.vetoed_by),
            "abstained": list(self.abstained),
            "reasoning": self.reasoning,
        }


@dataclass(frozen=True, slots=True)
class _Vote:
    view: MemberView
    decision: Decision
    action: Action
    weight: Decimal


def combine(
    symbol: str,
    views: Sequence[MemberView],
    *,
    quorum: Decimal = Decimal("0.5"),
    veto_confidence: Decimal = VETO_CONFIDENCE,
) -> Combined:
    """The members' views on `symbol` as one action (see the module's rules)."""
    if not _ZERO <= quorum <= 1:
        raise ValueError("quorum must be within [0, 1]")
    if not _ZERO <= veto_confidence <= 1:
        raise ValueError("veto_confidence must be within [0, 1]")
    symbol = symbol.upper()
    with localcontext(MONEY_CONTEXT):
        votes = [_vote(symbol, view, view.decision) for view in views if view.decision is not None]
        scores: dict[str, Decimal] = dict.fromkeys(_ACTIONS, _ZERO)
        for vote in votes:
            scores[vote.action] += vote.weight
        total = sum(scores.values(), _ZERO)
        lines = [_tally(symbol, votes, scores, len(views))]
        action, outcome = _winner(scores, total, quorum)
        lines.append(outcome)
        quantity: Decimal | None = None
        vetoes = [v for v in votes if _vetoes(symbol, v, veto_confidence)]
        vetoed_by: tuple[str, ...] = ()
        if action != "hold" and vetoes:
            vetoed_by = tuple(v.view.agent_id for v in vetoes)
            lines.append(_veto_line(action, vetoes, veto_confidence))
            action = "hold"
        elif action != "hold":
            quantity, line = _quantity(symbol, action, votes)
            lines.append(line)
            if quantity is None:
                action = "hold"
        confidence = (scores[action] / total).quantize(_CONFIDENCE_QUANTUM) if total else _ZERO
    abstained = [view for view in views if view.decision is None]
    lines.extend(_notes(symbol, votes, abstained))
    return Combined(
        symbol=symbol,
        action=action,
        confidence=confidence,
        quantity=quantity,
        scores=scores,
        vetoed_by=vetoed_by,
        abstained=tuple(view.agent_id for view in abstained),
        reasoning=" ".join(lines),
    )


def _vote(symbol: str, view: MemberView, decision: Decision) -> _Vote:
    action: Action = "hold"
    if decision.decision_type is DecisionType.TRADE and decision.symbol == symbol:
        action = "buy" if decision.side is OrderSide.BUY else "sell"
    return _Vote(view, decision, action, decision.confidence_score)


def _trades_elsewhere(symbol: str, decision: Decision) -> bool:
    return decision.decision_type is DecisionType.TRADE and decision.symbol != symbol


def _vetoes(symbol: str, vote: _Vote, veto_confidence: Decimal) -> bool:
    return (
        vote.decision.decision_type is DecisionType.RISK_CHECK
        and vote.decision.symbol in (None, symbol)
        and vote.weight >= veto_confidence
    )


def _tally(symbol: str, votes: Sequence[_Vote], scores: dict[str, Decimal], members: int) -> str:
    counts = ", ".join(f"{action} {_num(scores[action])}" for action in _ACTIONS)
    return f"{len(votes)} of {members} members voted on {symbol}, by confidence: {counts}."


def _winner(scores: dict[str, Decimal], total: Decimal, quorum: Decimal) -> tuple[Action, str]:
    if not total:
        return "hold", "No confidence behind any vote: hold."
    top = max(scores.values())
    leaders = [action for action in _ACTIONS if scores[action] == top]
    if len(leaders) > 1:
        return "hold", f"{' and '.join(leaders)} tie at {_num(top)}: hold."
    leader = leaders[0]
    share = f"{leader} has {_pct(top, total)}% of the score"
    quorum_text = f"the {_pct(quorum, Decimal(1))}% quorum"
    if top <= quorum * total:
        return "hold", f"{share}, not more than {quorum_text}: hold."
    return leader, f"{share}, more than {quorum_text}."


def _veto_line(action: Action, vetoes: Sequence[_Vote], veto_confidence: Decimal) -> str:
    names = ", ".join(f"{v.view.agent_name} ({_num(v.weight)})" for v in vetoes)
    return (
        f"The {action} is vetoed by a risk check at confidence {_num(veto_confidence)} "
        f"or more from {names}: hold."
    )


def _quantity(symbol: str, action: Action, votes: Sequence[_Vote]) -> tuple[Decimal | None, str]:
    sized = [v for v in votes if v.action == action and v.view.quantity is not None and v.weight]
    weight = sum((v.weight for v in sized), _ZERO)
    if not weight:
        return None, f"No member voting {action} gave a quantity: hold."
    quantity = sum((v.weight * (v.view.quantity or _ZERO) for v in sized), _ZERO) / weight
    members = "member" if len(sized) == 1 else "members"
    return quantity, (
        f"{action.capitalize()} {_num(quantity)} {symbol}, the confidence-weighted mean "
        f"of {len(sized)} {members}' quantities."
    )


def _notes(symbol: str, votes: Sequence[_Vote], abstained: Sequence[MemberView]) -> list[str]:
    lines: list[str] = []
    elsewhere = [
        f"{v.view.agent_name} ({v.decision.symbol})"
        for v in votes
        if _trades_elsewhere(symbol, v.decision)
    ]
    if elsewhere:
        lines.append(f"Counted as hold, trading another symbol: {', '.join(elsewhere)}.")
    if abstained:
        names = ", ".join(
            f"{view.agent_name} ({view.error})" if view.error else view.agent_name
            for view in abstained
        )
        lines.append(f"Abstained: {names}.")
    return lines


def _clip(text: str) -> str:
    return text if len(text) <= _REASONING_MAX else text[: _REASONING_MAX - 1] + "…"


def _num(value: Decimal) -> str:
    return decimal_to_str(value.normalize(MONEY_CONTEXT))


def _pct(part: Decimal, whole: Decimal) -> str:
    with localcontext(MONEY_CONTEXT):
        return _num((part * _HUNDRED / whole).quantize(_PCT_QUANTUM))
