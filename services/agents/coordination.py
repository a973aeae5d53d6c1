"""Several agents' views on one symbol combined into one decision: pure, `Decimal` only.

Every member is asked about the coordinated symbol alone (its context shows only that
symbol: services/agents/coordinator.py), so a member trading another symbol is a member
that answered outside its brief; it still counts, as hold.

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
  (`vetoed_by` is filled only then).
- Sizes are shares, never quantities, since each member sized its trade on its own
  account: a buy's `share` is the fraction of the member's equity it would spend, a
  sell's the fraction of the member's holding it would sell. A winning trade's share
  is the confidence-weighted mean `sum(conf_i * share_i) / sum(conf_i)` over the
  winning members that gave one with a confidence above 0; without such a member it
  is a hold. `to_decision` turns the share into the executor's own order: a buy of
  that fraction of the executor's equity, a sell of that fraction of its holding.
- `confidence` is the confidence-weighted agreement with the final action: the sum of
  the confidences of the members who voted for it (the winning side's, or hold's when
  the result is a hold; vetoers vote hold), divided by the number of members who
  voted. So it is 1 only when every voting member backs the action with confidence 1:
  a unanimous vote at confidence 0.6 is 0.6, and a 0.9 buy against a 0.9 hold is 0.45.
  Rounded to 4 places; 0 when nobody voted. `scores` always has buy, sell and hold.

`reasoning` explains the result with the numbers. Arithmetic runs in `MONEY_CONTEXT`;
the share is exact to its precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, Literal

from models.base import decimal_to_str
from models.decisions import Decision
from models.enums import DecisionType, OrderSide, OrderType
from services.paper_trading.matching import MONEY_CONTEXT

Action = Literal["buy", "sell", "hold"]

VETO_CONFIDENCE = Decimal("0.7")

_ACTIONS: tuple[Action, ...] = ("buy", "sell", "hold")
_ZERO = Decimal(0)
_ONE = Decimal(1)
# A buy's fraction of equity is sent with this many places, rounded down.
_SHARE_QUANTUM = Decimal("0.00000001")
_HUNDRED = Decimal(100)
_CONFIDENCE_QUANTUM = Decimal("0.0001")
_PCT_QUANTUM = Decimal("0.01")
# Decision.reasoning holds at most this many characters.
_REASONING_MAX = 4000


@dataclass(frozen=True, slots=True)
class MemberView:
    """One member's decision; `share` sizes its trade on its own account (a buy: the
    fraction of its equity; a sell: the fraction of its holding). `decision` None: the
    member failed and abstains."""

    agent_id: str
    agent_name: str
    decision: Decision | None
    share: Decimal | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.share is not None and self.share <= 0:
            raise ValueError(f"member {self.agent_id}: share must be positive")


@dataclass(frozen=True, slots=True)
class Combined:
    symbol: str
    action: Action
    confidence: Decimal
    # Trades only: of the executor's equity (buy) or holding (sell).
    share: Decimal | None
    scores: dict[str, Decimal]
    vetoed_by: tuple[str, ...]
    abstained: tuple[str, ...]
    reasoning: str

    def __post_init__(self) -> None:
        if (self.action == "hold") != (self.share is None):
            raise ValueError("a buy or sell has a share and a hold has none")

    def to_decision(self, *, holding: Decimal = _ZERO) -> Decision:
        """The executor's market order, sized on its own account: a buy of `share` of
        its equity, a sell of `share` of `holding` (its free quantity of the symbol),
        a share above 1 taken as 1. A hold stays a hold, and so does a sell when the
        executor holds nothing. Reasoning and confidence carried over."""
        if self.action == "hold" or self.share is None:
            return self._hold(self.reasoning)
        with localcontext(MONEY_CONTEXT):
            share = min(self.share, _ONE)
            if self.action == "buy":
                fraction = share.quantize(_SHARE_QUANTUM, rounding=ROUND_DOWN)
                if fraction <= 0:
                    return self._hold(f"{self.reasoning} The share rounds to nothing: hold.")
                fraction_of_equity: Decimal | None = fraction
                quantity: Decimal | None = None
            else:
                quantity = share * holding
                if quantity <= 0:
                    return self._hold(
                        f"{self.reasoning} The executor holds no {self.symbol} to sell: hold."
                    )
                fraction_of_equity = None
        return Decision(
            decision_type=DecisionType.TRADE,
            symbol=self.symbol,
            side=OrderSide(self.action),
            order_type=OrderType.MARKET,
            reasoning=_clip(self.reasoning),
            confidence_score=self.confidence,
            quantity=quantity,
            fraction_of_equity=fraction_of_equity,
        )

    def _hold(self, reasoning: str) -> Decision:
        return Decision(
            decision_type=DecisionType.HOLD,
            symbol=self.symbol,
            reasoning=_clip(reasoning),
            confidence_score=self.confidence,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "action": self.action,
            "confidence": decimal_to_str(self.confidence),
            "share": decimal_to_str(self.share) if self.share is not None else None,
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
        share: Decimal | None = None
        vetoes = [v for v in votes if _vetoes(symbol, v, veto_confidence)]
        vetoed_by: tuple[str, ...] = ()
        if action != "hold" and vetoes:
            vetoed_by = tuple(v.view.agent_id for v in vetoes)
            lines.append(_veto_line(action, vetoes, veto_confidence))
            action = "hold"
        elif action != "hold":
            share, line = _share(symbol, action, votes)
            lines.append(line)
            if share is None:
                action = "hold"
        confidence = _agreement(action, votes)
    abstained = [view for view in views if view.decision is None]
    lines.extend(_notes(symbol, votes, abstained))
    return Combined(
        symbol=symbol,
        action=action,
        confidence=confidence,
        share=share,
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


def _agreement(action: Action, votes: Sequence[_Vote]) -> Decimal:
    """The confidence-weighted agreement with `action` (see the module's rules)."""
    if not votes:
        return _ZERO
    behind = sum((v.weight for v in votes if v.action == action), _ZERO)
    return (behind / len(votes)).quantize(_CONFIDENCE_QUANTUM)


def _share(symbol: str, action: Action, votes: Sequence[_Vote]) -> tuple[Decimal | None, str]:
    sized = [v for v in votes if v.action == action and v.view.share is not None and v.weight]
    weight = sum((v.weight for v in sized), _ZERO)
    if not weight:
        return None, f"No member voting {action} gave a size: hold."
    share = sum((v.weight * (v.view.share or _ZERO) for v in sized), _ZERO) / weight
    members = "member" if len(sized) == 1 else "members"
    of = "equity" if action == "buy" else "holding"
    return share, (
        f"{action.capitalize()} {_pct(share, _ONE)}% of the executor's {of} in {symbol}, "
        f"the confidence-weighted mean of {len(sized)} {members}' shares."
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
