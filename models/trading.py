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
from typing import Annotated, Self

from pydantic import Field, model_validator

from models.base import AppModel, DecimalStr, InputModel
from models.enums import Liquidity, OrderSide, OrderStatus, OrderType, TimeInForce

# Below 10^20: what a NUMERIC(38, 18) column holds, so no amount fails at the database.
PositiveDecimal = Annotated[DecimalStr, Field(gt=0, lt=Decimal(10) ** 20, allow_inf_nan=False)]
ClientOrderId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]

_NEEDS_PRICE = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_NEEDS_STOP = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


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
    quantity: PositiveDecimal = Field(description="In the base asset, rounded down to the step.")
    price: PositiveDecimal | None = Field(
        default=None, description="Limit price: required for limit and stop_limit, on the tick."
    )
    stop_price: PositiveDecimal | None = Field(
        default=None, description="Trigger on the last price: required for stop and stop_limit."
    )
    time_in_force: TimeInForce = TimeInForce.GTC
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
    maker_fee_bps: DecimalStr
    taker_fee_bps: DecimalStr


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
