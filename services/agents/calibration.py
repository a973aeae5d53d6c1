"""Is an agent's confidence worth anything? Its trades' outcomes against the confidence
behind them.

Pure, `Decimal` only (the response models are models/calibration.py):

- An outcome is one order a decision placed (a trade's order, or each order of a
  rebalance), with the decision's confidence. A buy that opened a position is judged
  by the realised PnL of that position (`realised`): `closed_lots` follows the
  account's fills first in, first out, so each later sell closes the oldest quantity
  bought first, and a buy's PnL is what the sold part of it fetched less what it cost,
  net of the buy's and the sell's fees (in proportion to the quantity). A buy nothing
  has closed yet, and any sell (a spot sell opens no position; what it avoided is the
  move after it), is judged by the price a horizon later (`horizon`), by the caller.
  An outcome won when its result is above 0.

- Five buckets by confidence, [0, 0.2), [0.2, 0.4), [0.4, 0.6), [0.6, 0.8), [0.8, 1]:
  a bucket holds its low edge, and the last one also holds 1.
- `brier_score` is the mean of `(confidence - won)^2` (won is 1 or 0): 0 is perfect,
  0.25 is what a constant 0.5 scores.
- The high-confidence group is confidence >= 0.7, the low one confidence < 0.5.
  Confidence is `informative` when the high group won more often than the low one;
  None while either group has fewer than `min_samples` trades.

Win rates, mean confidences and the Brier score are rounded to 4 places; the
high-versus-low comparison uses the exact rates.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Literal

from models.base import decimal_to_str
from models.calibration import Calibration as Calibration
from models.calibration import CalibrationBucket as CalibrationBucket
from models.calibration import CalibrationOutcome
from services.paper_trading.matching import MONEY_CONTEXT

HIGH_CONFIDENCE = Decimal("0.7")
LOW_CONFIDENCE = Decimal("0.5")
BUCKET_EDGES = tuple(Decimal(edge) for edge in ("0", "0.2", "0.4", "0.6", "0.8", "1"))

_ZERO = Decimal(0)
_ONE = Decimal(1)
_QUANTUM = Decimal("0.0001")
_PCT_QUANTUM = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One judged order: the confidence it was placed with, whether it made money, how
    that was judged, and (for the API) the order's details."""

    confidence: Decimal
    won: bool
    kind: Literal["realised", "horizon"] = "horizon"
    detail: CalibrationOutcome | None = None

    def __post_init__(self) -> None:
        if not _ZERO <= self.confidence <= _ONE:
            raise ValueError("confidence must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One fill of the account, as `closed_lots` reads it."""

    order_id: uuid.UUID
    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal
    price: Decimal
    fee: Decimal
    executed_at: datetime


@dataclass(slots=True)
class Closed:
    """How much of an order's bought quantity later sells closed, and its PnL on that."""

    quantity: Decimal = _ZERO
    pnl: Decimal = _ZERO


@dataclass(slots=True)
class _Lot:
    order_id: uuid.UUID
    quantity: Decimal
    # What the lot's quantity still open cost, its buy fee included.
    cost: Decimal


@dataclass(slots=True)
class _Book:
    lots: deque[_Lot] = field(default_factory=deque)


def closed_lots(fills: Iterable[FillRecord]) -> dict[uuid.UUID, Closed]:
    """Per buy order, what later sells of its symbol closed of it, first in, first out,
    and the PnL of that part net of both sides' fees. Fills are taken in time order
    (ties in the order given); a sell beyond what is held closes nothing more."""
    books: dict[str, _Book] = {}
    closed: dict[uuid.UUID, Closed] = {}
    ordered = sorted(enumerate(fills), key=lambda item: (item[1].executed_at, item[0]))
    with localcontext(MONEY_CONTEXT):
        for _, fill in ordered:
            book = books.setdefault(fill.symbol, _Book())
            if fill.side == "buy":
                book.lots.append(
                    _Lot(fill.order_id, fill.quantity, fill.quantity * fill.price + fill.fee)
                )
                continue
            left = fill.quantity
            proceeds = fill.quantity * fill.price - fill.fee
            while left > 0 and book.lots:
                lot = book.lots[0]
                taken = min(left, lot.quantity)
                # Whole remainders where a lot or the sell ends: the shares add up exactly.
                cost = lot.cost if taken == lot.quantity else lot.cost * taken / lot.quantity
                got = proceeds if taken == left else proceeds * taken / left
                result = closed.setdefault(lot.order_id, Closed())
                result.quantity += taken
                result.pnl += got - cost
                lot.quantity -= taken
                lot.cost -= cost
                left -= taken
                proceeds -= got
                if not lot.quantity:
                    book.lots.popleft()
    return closed


def calibrate(outcomes: Sequence[Outcome], *, min_samples: int = 10) -> Calibration:
    """Buckets, Brier score and the high-versus-low confidence win rates of `outcomes`."""
    if min_samples < 1:
        raise ValueError("min_samples must be at least 1")
    high = [o for o in outcomes if o.confidence >= HIGH_CONFIDENCE]
    low = [o for o in outcomes if o.confidence < LOW_CONFIDENCE]
    informative: bool | None = None
    if len(high) >= min_samples and len(low) >= min_samples:
        # Exact comparison of wins_h / n_h > wins_l / n_l, cross-multiplied.
        informative = _wins(high) * len(low) > _wins(low) * len(high)
    with localcontext(MONEY_CONTEXT):
        brier = (
            sum(((o.confidence - _won(o)) ** 2 for o in outcomes), _ZERO) / len(outcomes)
            if outcomes
            else None
        )
    return Calibration(
        trades=len(outcomes),
        wins=_wins(outcomes),
        realised=sum(1 for o in outcomes if o.kind == "realised"),
        horizon=sum(1 for o in outcomes if o.kind == "horizon"),
        buckets=[_bucket(outcomes, i) for i in range(len(BUCKET_EDGES) - 1)],
        brier_score=_round(brier),
        high_confidence_win_rate=_win_rate(high),
        low_confidence_win_rate=_win_rate(low),
        informative=informative,
        summary=_summary(outcomes, high, low, informative, min_samples),
        outcomes=[o.detail for o in outcomes if o.detail is not None],
    )


def _bucket(outcomes: Sequence[Outcome], index: int) -> CalibrationBucket:
    low, high = BUCKET_EDGES[index], BUCKET_EDGES[index + 1]
    last = index == len(BUCKET_EDGES) - 2
    inside = [o for o in outcomes if low <= o.confidence < high or (last and o.confidence == high)]
    mean = None
    if inside:
        with localcontext(MONEY_CONTEXT):
            mean = sum((o.confidence for o in inside), _ZERO) / len(inside)
    return CalibrationBucket(
        low=low,
        high=high,
        trades=len(inside),
        wins=_wins(inside),
        win_rate=_win_rate(inside),
        mean_confidence=_round(mean),
    )


def _summary(
    outcomes: Sequence[Outcome],
    high: Sequence[Outcome],
    low: Sequence[Outcome],
    informative: bool | None,
    min_samples: int,
) -> str:
    if not outcomes:
        return "No judged trades yet: nothing to calibrate"
    groups = (
        f"{decimal_to_str(HIGH_CONFIDENCE)}+ confidence trades {_group(high)}, "
        f"under {decimal_to_str(LOW_CONFIDENCE)} {_group(low)}"
    )
    if informative is None:
        return f"{groups}: too few trades to tell ({min_samples} needed in each group)"
    verdict = "informative" if informative else "not informative"
    return f"{groups}: confidence is {verdict}"


def _group(outcomes: Sequence[Outcome]) -> str:
    if not outcomes:
        return "none yet"
    with localcontext(MONEY_CONTEXT):
        pct = (Decimal(_wins(outcomes)) * 100 / len(outcomes)).quantize(_PCT_QUANTUM)
    return f"won {decimal_to_str(pct.normalize(MONEY_CONTEXT))}% ({len(outcomes)})"


def _won(outcome: Outcome) -> Decimal:
    return _ONE if outcome.won else _ZERO


def _wins(outcomes: Sequence[Outcome]) -> int:
    return sum(1 for o in outcomes if o.won)


def _win_rate(outcomes: Sequence[Outcome]) -> Decimal | None:
    if not outcomes:
        return None
    with localcontext(MONEY_CONTEXT):
        return _round(Decimal(_wins(outcomes)) / len(outcomes))


def _round(value: Decimal | None) -> Decimal | None:
    return value.quantize(_QUANTUM, context=MONEY_CONTEXT) if value is not None else None
