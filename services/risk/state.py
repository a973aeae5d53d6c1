"""What the risk rules see of an account, and what a user's limit is: plain `Decimal`
values, no I/O, shared by the pre-trade check, the monitor and the stress tests.

Units, per limit type (docs/risk.md has the rules):

- daily_loss: quote currency; the loss since the start of the UTC day
  (start-of-day equity - equity, 0 when up).
- max_drawdown: a fraction of peak equity in (0, 1]; the fall from the highest equity
  the account's snapshots recorded.
- position_size: quote currency; a symbol's exposure (its holding at the mark plus the
  unfilled remainder of its open buys). With a symbol, that symbol's; without, every
  symbol's, each on its own.
- gross_exposure: quote currency; the sum of every symbol's exposure.
- leverage: a ratio; gross exposure over equity.
- max_open_orders: a count; the account's open orders (of the symbol, with one).
- order_notional: quote currency; one order's notional (of the symbol, with one).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from models.enums import OrderSide
from models.risk import LimitType

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LimitRule:
    """A user's limit. `account_id` None applies it to each of the user's accounts on
    its own; `symbol` None makes a per-symbol type apply to every symbol."""

    id: uuid.UUID
    limit_type: LimitType
    limit_value: Decimal
    symbol: str | None = None
    account_id: uuid.UUID | None = None
    kill_on_breach: bool = False


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account as the rules see it. `exposures` maps a symbol to its exposure (see
    the module doc); `open_orders` maps a symbol to its count of open orders.
    `day_start_equity` / `peak_equity` None mean unknown: the rules that need them pass,
    saying so."""

    account_id: uuid.UUID
    equity: Decimal
    day_start_equity: Decimal | None
    peak_equity: Decimal | None
    exposures: dict[str, Decimal] = field(default_factory=dict)
    open_orders: dict[str, int] = field(default_factory=dict)

    @property
    def gross_exposure(self) -> Decimal:
        return sum(self.exposures.values(), ZERO)

    @property
    def open_order_count(self) -> int:
        return sum(self.open_orders.values())


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order about to be placed: `notional` what it may trade at most (quantity x its
    limit, stop or expected fill price); `rests` whether it may become an open order."""

    symbol: str
    side: OrderSide
    notional: Decimal
    rests: bool


@dataclass(frozen=True, slots=True)
class LimitReading:
    """One limit measured on one account: `current` the measure now, `projected` after
    the order (== current when there is none), `utilisation` = projected / limit (None
    when the measure is unknown). `breached`: the order is refused for it (or, with no
    order, the account is over the limit)."""

    rule: LimitRule
    current: Decimal | None
    projected: Decimal | None
    utilisation: Decimal | None
    breached: bool
    reason: str
