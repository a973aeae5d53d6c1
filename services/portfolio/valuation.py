"""An account valued at the mark (the definitions are in service.py's module doc)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import PairRules, Ticker
from database.orm import Position, TradingAccount
from database.repositories import portfolio as portfolio_repo
from database.repositories.accounts import balances_of
from models.trading import AccountRead, BalanceRead, PositionRead

_ZERO = Decimal(0)


class MarketPrices(Protocol):
    """What the portfolio needs from the market data service."""

    def mark_price(self, symbol: str) -> Decimal | None: ...

    def resolve_symbol(self, raw: str) -> str: ...

    def pair_rules(self, symbol: str) -> PairRules: ...

    def ticker(self, symbol: str) -> Ticker: ...


@dataclass(frozen=True, slots=True)
class Valuation:
    account: AccountRead
    balances: list[BalanceRead]
    positions: list[PositionRead]
    cash: Decimal
    free_cash: Decimal
    positions_value: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal

    @property
    def equity(self) -> Decimal:
        return self.cash + self.positions_value

    @property
    def total_pnl(self) -> Decimal:
        return self.realized_pnl + self.unrealized_pnl - self.fees


async def value_at_mark(
    session: AsyncSession, account: TradingAccount, market: MarketPrices
) -> Valuation:
    """The account's balances and open positions marked to the latest price (a
    position without a price counts at cost), read in the caller's session."""
    balances = await balances_of(session, account.id)
    rows = await portfolio_repo.positions_of(session, account.id, user_id=account.user_id)
    # Money is compared in Python: SQLite stores it as text (database/orm/types.py).
    positions = [mark_position(p, market) for p in rows if p.quantity > 0]
    cash = sum((b.free + b.locked for b in balances if b.asset == account.base_currency), _ZERO)
    free_cash = sum((b.free for b in balances if b.asset == account.base_currency), _ZERO)
    return Valuation(
        account=AccountRead.model_validate(account),
        balances=[BalanceRead.model_validate(b) for b in balances],
        positions=positions,
        cash=cash,
        free_cash=free_cash,
        positions_value=sum(
            (p.market_value if p.market_value is not None else p.cost_basis for p in positions),
            _ZERO,
        ),
        realized_pnl=account.realized_pnl,
        unrealized_pnl=sum((p.unrealized_pnl or _ZERO for p in positions), _ZERO),
        fees=account.total_fees,
    )


def mark_position(position: Position, market: MarketPrices) -> PositionRead:
    """The position at the market's mark; valued at cost when there is none."""
    price = market.mark_price(position.symbol)
    value = None if price is None else position.quantity * price
    return PositionRead(
        symbol=position.symbol,
        quantity=position.quantity,
        avg_price=position.avg_price,
        cost_basis=position.cost_basis,
        mark_price=price,
        market_value=value,
        unrealized_pnl=None if value is None else value - position.cost_basis,
        realized_pnl=position.realized_pnl,
        last_trade_at=position.last_trade_at,
    )
