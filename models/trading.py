"""Orders, fills, balances and positions of the paper exchange, as the API shows them.

Field names follow the seed API (symbol, side, order_type, quantity, price, stop_price,
time_in_force, client_order_id, status, filled_quantity, average_price, fees, strategy,
reasoning). Decimals are strings in responses; requests accept a decimal string or a
JSON number, and a number is read exactly (see api/routing.py), never through a float.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Generic, Self, TypeVar

from pydantic import Field, model_validator

from models.base import AppModel, DecimalStr, InputModel, IsoAwareDatetime
from models.enums import Liquidity, OrderSide, OrderStatus, OrderType, StopTrigger, TimeInForce

# Below 10^20: what a NUMERIC(38, 18) column holds, so no amount fails at the database.
PositiveDecimal = Annotated[DecimalStr, Field(gt=0, lt=Decimal(10) ** 20, allow_inf_nan=False)]
ClientOrderId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]

_NEEDS_PRICE = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_NEEDS_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
_IMMEDIATE = frozenset({TimeInForce.IOC, TimeInForce.FOK})


class OrderCreate(InputModel):
    """A new paper order. `account_id` defaults to the user's default paper account."""

    symbol: str = Field(
        min_length=1,
        max_length=32,
        description="Pair as `BTC/USD`; `BTC-USD` is accepted too.",
        examples=["BTC/USD"],
    )
    side: OrderSide
    order_type: OrderType = OrderType.MARKET
    quantity: PositiveDecimal | None = Field(
        default=None,
        description="In the base asset, rounded down to the step. Either this or `notional`.",
    )
    notional: PositiveDecimal | None = Field(
        default=None,
        description=(
            "Market orders only, instead of `quantity`: a cash amount in the quote currency. "
            "A buy spends at most this, fees included; a sell sells what brings in at most "
            "this before fees. The quantity is what the book gives for it, rounded down "
            "to the step."
        ),
    )
    price: PositiveDecimal | None = Field(
        default=None, description="Limit price: required for limit and stop_limit, on the tick."
    )
    stop_price: PositiveDecimal | None = Field(
        default=None, description="Trigger price: required for stop and stop_limit."
    )
    stop_trigger: StopTrigger = Field(
        default=StopTrigger.LAST,
        description="Stops only: the price that triggers it (a buy when it is >= the stop, "
        "a sell when <=): last trade, bid or ask.",
    )
    time_in_force: TimeInForce = Field(
        default=TimeInForce.GTC,
        description="GTC rests until cancelled; DAY until the end of its UTC day; GTD until "
        "`expires_at`; IOC cancels what does not fill at once; FOK fills all at once or "
        "nothing.",
    )
    expires_at: IsoAwareDatetime | None = Field(
        default=None, description="GTD only: when the order expires (ISO 8601 with offset)."
    )
    post_only: bool = Field(
        default=False,
        description="Limit orders only: refused (rejected) rather than taking liquidity, so "
        "it only ever fills as maker.",
    )
    client_order_id: ClientOrderId | None = Field(
        default=None,
        description=(
            "Idempotency key per account: the same id with the same parameters returns "
            "the original order; with other parameters it is a 409."
        ),
    )
    account_id: uuid.UUID | None = None
    strategy: str | None = Field(default=None, max_length=100)
    reasoning: str | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _prices_fit_the_type(self) -> Self:
        if (self.quantity is None) == (self.notional is None):
            raise ValueError("give either a quantity or a notional")
        if self.notional is not None and self.order_type is not OrderType.MARKET:
            raise ValueError("only a market order takes a notional")
        if self.time_in_force is TimeInForce.GTD and self.expires_at is None:
            raise ValueError("a GTD order needs an expires_at")
        if self.time_in_force is not TimeInForce.GTD and self.expires_at is not None:
            raise ValueError("only a GTD order takes an expires_at")
        if self.post_only and (
            self.order_type is not OrderType.LIMIT or self.time_in_force in _IMMEDIATE
        ):
            raise ValueError("only a limit order that may rest (GTC, DAY, GTD) can be post-only")
        if self.stop_trigger is not StopTrigger.LAST and self.order_type not in _NEEDS_STOP:
            raise ValueError(f"a {self.order_type} order takes no stop_trigger")
        if self.order_type in _NEEDS_PRICE and self.price is None:
            raise ValueError(f"a {self.order_type} order needs a price")
        if self.order_type not in _NEEDS_PRICE and self.price is not None:
            raise ValueError(f"a {self.order_type} order takes no price")
        if self.order_type in _NEEDS_STOP and self.stop_price is None:
            raise ValueError(f"a {self.order_type} order needs a stop_price")
        if self.order_type not in _NEEDS_STOP and self.stop_price is not None:
            raise ValueError(f"a {self.order_type} order takes no stop_price")
        return self


class FillRead(AppModel):
    id: uuid.UUID
    quantity: DecimalStr
    price: DecimalStr
    fee: DecimalStr
    fee_asset: str
    liquidity: Liquidity
    realized_pnl: DecimalStr
    executed_at: datetime


class OrderRead(AppModel):
    id: uuid.UUID
    account_id: uuid.UUID
    agent_id: uuid.UUID | None
    client_order_id: str | None
    symbol: str
    side: OrderSide
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: DecimalStr
    price: DecimalStr | None
    stop_price: DecimalStr | None
    stop_trigger: StopTrigger = Field(
        default=StopTrigger.LAST, description="What triggers a stop: last, bid or ask."
    )
    post_only: bool = Field(default=False, description="A limit that only fills as maker.")
    expires_at: datetime | None = Field(
        default=None, description="When a DAY or GTD order expires; else null."
    )
    notional: DecimalStr | None = Field(
        default=None, description="The cash amount a notional market order asked for."
    )
    replaces_order_id: uuid.UUID | None = Field(
        default=None, description="The order this one replaced (PATCH); null for a new order."
    )
    status: OrderStatus
    filled_quantity: DecimalStr
    average_price: DecimalStr | None
    fees: DecimalStr
    locked_amount: DecimalStr = Field(description="Funds or assets held for the open rest.")
    reject_reason: str | None
    strategy: str | None
    reasoning: str | None
    created_at: datetime
    updated_at: datetime
    triggered_at: datetime | None
    closed_at: datetime | None
    fills: list[FillRead] = Field(default_factory=list)


class BalanceRead(AppModel):
    asset: str
    free: DecimalStr
    locked: DecimalStr

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


class PositionRead(AppModel):
    symbol: str
    quantity: DecimalStr
    avg_price: DecimalStr = Field(description="Average cost per unit, fees excluded.")
    cost_basis: DecimalStr
    mark_price: DecimalStr | None
    market_value: DecimalStr | None
    unrealized_pnl: DecimalStr | None
    realized_pnl: DecimalStr
    last_trade_at: datetime | None


class AccountRead(AppModel):
    id: uuid.UUID
    account_name: str
    account_type: str
    exchange: str
    base_currency: str
    agent_id: uuid.UUID | None
    is_default: bool
    initial_balance: DecimalStr
    maker_fee_bps: DecimalStr | None = Field(
        description="The account's own maker rate (bps); null: each pair's schedule."
    )
    taker_fee_bps: DecimalStr | None = Field(
        description="The account's own taker rate (bps); null: each pair's schedule."
    )


class PaperPortfolioRead(AppModel):
    """An account's balances and positions marked to the latest price."""

    account: AccountRead
    balances: list[BalanceRead]
    positions: list[PositionRead]
    cash: DecimalStr
    positions_value: DecimalStr
    equity: DecimalStr
    realized_pnl: DecimalStr
    unrealized_pnl: DecimalStr
    total_pnl: DecimalStr
    fees: DecimalStr


T = TypeVar("T")
# The decimals a NUMERIC(38, 18) column keeps: an amount set as given (not computed and
# rounded by the ledger) must not have more, or the database would round it.
MONEY_DECIMALS = 18
StoredAmount = Annotated[PositiveDecimal, Field(decimal_places=MONEY_DECIMALS)]


class CursorPage(AppModel, Generic[T]):
    """One page of a keyset-paginated list, newest first. Pass `next_cursor` back as
    `cursor` for the next page; it is null on the last one. Rows added meanwhile are
    newer than the cursor: a walk never repeats or skips a row."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Opaque; send it back unchanged as `cursor`. Null: no more rows."
    )
    limit: int


class TradeRead(AppModel):
    """One fill, with the order and account it belongs to."""

    id: uuid.UUID
    order_id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    side: OrderSide
    quantity: DecimalStr
    price: DecimalStr
    fee: DecimalStr
    fee_asset: str
    liquidity: Liquidity
    realized_pnl: DecimalStr = Field(description="Sells: proceeds minus the cost removed.")
    executed_at: datetime


class OrderList(AppModel):
    """Orders an operation acted on (all of them, not a page)."""

    items: list[OrderRead]
    count: int


class PositionClose(AppModel):
    """A position closed (or reduced) by a market sell, after its open sells were
    cancelled to free the base asset they held."""

    symbol: str
    order: OrderRead = Field(description="The market sell; its fills say what it got.")
    cancelled_orders: list[OrderRead] = Field(
        description="The open sell orders of the symbol cancelled first."
    )


class PositionCloseSkipped(AppModel):
    """A position a close-all did not sell, and why (the error a single close gives)."""

    symbol: str
    quantity: DecimalStr
    code: str = Field(description="The error code, e.g. quantity_below_minimum.")
    message: str


class PositionCloseList(AppModel):
    items: list[PositionClose]
    count: int
    skipped: list[PositionCloseSkipped]


class AccountReset(InputModel):
    """Optional settings of a reset; an empty body keeps the initial balance."""

    initial_balance: StoredAmount | None = Field(
        default=None,
        description="The new initial balance (and cash) in the account's currency; "
        "omitted: the current initial balance.",
    )


class AccountResetRead(AppModel):
    """The account as the reset left it, and what the reset removed."""

    account: AccountRead
    balances: list[BalanceRead]
    cancelled_orders: int = Field(description="Open orders cancelled (then deleted).")
    deleted_orders: int = Field(description="Orders deleted, the cancelled ones included.")
    deleted_fills: int


class OrderReplace(InputModel):
    """PATCH of an open order: what changes. The order is replaced by a new version
    (linked to it by `replaces_order_id`); symbol, side and type stay."""

    quantity: PositiveDecimal | None = Field(
        default=None,
        description="The new order's quantity; omitted: what the old one still had open.",
    )
    price: PositiveDecimal | None = Field(default=None, description="A new limit price.")
    stop_price: PositiveDecimal | None = Field(default=None, description="A new stop price.")
    time_in_force: TimeInForce | None = Field(
        default=None, description="GTC, DAY or GTD (an open order is one that rests)."
    )
    expires_at: IsoAwareDatetime | None = Field(default=None, description="GTD: the new expiry.")
    client_order_id: ClientOrderId | None = Field(
        default=None,
        description="The new version's idempotency key: a retried PATCH with it returns "
        "the version it made.",
    )

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if all(
            value is None
            for value in (
                self.quantity,
                self.price,
                self.stop_price,
                self.time_in_force,
                self.expires_at,
            )
        ):
            raise ValueError(
                "nothing to change: give a quantity, price, stop_price, time_in_force or expires_at"
            )
        if self.time_in_force in _IMMEDIATE:
            raise ValueError("an open order is replaced by one that rests: GTC, DAY or GTD")
        return self
