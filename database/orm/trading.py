"""The ledger: accounts and their balances, orders, fills, positions, equity snapshots,
and the exchange credentials a live account trades with."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from database.orm.base import Base, Timestamps, UUIDPrimaryKey
from database.orm.constraints import (
    non_negative,
    num,
    one_of,
    partial,
    positive,
    unit_interval,
)
from database.orm.types import JSONType, Money, UTCDateTime, utcnow
from database.orm.user import UserOwned, UserOwnedComposite
from models.enums import (
    AccountType,
    Liquidity,
    OrderSide,
    OrderStatus,
    OrderType,
    StopTrigger,
    TimeInForce,
)

if TYPE_CHECKING:
    from database.orm.agent import Agent, AgentDecision


OPEN_ORDER_STATUSES = (OrderStatus.PENDING, OrderStatus.PARTIAL)
_OPEN = "status IN ('pending', 'partial')"


class ExchangeCredential(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    """API keys for a venue, encrypted by the service before they reach this table."""

    __tablename__ = "exchange_credentials"
    __table_args__ = (UniqueConstraint("user_id", "exchange", "label"),)

    exchange: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(100))
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    api_secret_encrypted: Mapped[str] = mapped_column(Text)
    passphrase_encrypted: Mapped[str | None] = mapped_column(Text)
    # The key's last characters, to tell keys apart without decrypting them.
    key_hint: Mapped[str | None] = mapped_column(String(16))
    is_testnet: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TradingAccount(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    """A paper, testnet or mainnet account on one exchange, owned by a user and
    optionally dedicated to one agent. Cash lives in `account_balances`."""

    __tablename__ = "trading_accounts"
    __table_args__ = (
        # NULLs are distinct in a UNIQUE on both databases: this covers agent accounts,
        # the partial index below covers the user's own (agent_id IS NULL) accounts.
        UniqueConstraint("user_id", "agent_id", "account_name"),
        Index(
            "uq_trading_accounts_user_id_account_name_no_agent",
            "user_id",
            "account_name",
            unique=True,
            **partial("agent_id IS NULL"),
        ),
        # At most one default account per user.
        Index("uq_trading_accounts_default", "user_id", unique=True, **partial("is_default")),
        CheckConstraint("is_default = false OR agent_id IS NULL", name="default_has_no_agent"),
        CheckConstraint(
            "account_type <> 'paper' OR credentials_id IS NULL", name="paper_has_no_credentials"
        ),
        one_of("account_type", AccountType),
        *non_negative(
            "initial_balance",
            "maker_fee_bps",
            "taker_fee_bps",
            "total_fees",
            "total_trades",
            "winning_trades",
            "losing_trades",
        ),
        CheckConstraint(
            "winning_trades + losing_trades <= total_trades", name="trade_counts_consistent"
        ),
        unit_interval("max_drawdown"),
    )

    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"), index=True)
    account_name: Mapped[str] = mapped_column(String(100))
    account_type: Mapped[str] = mapped_column(String(16), default=AccountType.PAPER.value)
    exchange: Mapped[str] = mapped_column(String(32))
    base_currency: Mapped[str] = mapped_column(String(16), default="USD")
    initial_balance: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # The account's own fee rates, set by its user: NULL trades at each pair's schedule
    # (services/paper_trading/fees.py).
    maker_fee_bps: Mapped[Decimal | None] = mapped_column(Money)
    taker_fee_bps: Mapped[Decimal | None] = mapped_column(Money)
    realized_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    total_fees: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    total_trades: Mapped[int] = mapped_column(Integer, default=0)
    winning_trades: Mapped[int] = mapped_column(Integer, default=0)
    losing_trades: Mapped[int] = mapped_column(Integer, default=0)
    # Largest peak-to-trough fall of equity, as a fraction of the peak.
    max_drawdown: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    sharpe_ratio: Mapped[Decimal | None] = mapped_column(Money)
    # Bumped whenever a limit or a kill switch over the account changes: the pre-trade
    # check reads it with the account (under the order's lock) and re-reads its rules
    # only when it moved (services/risk/gate.py).
    risk_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    credentials_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("exchange_credentials.id", ondelete="SET NULL"), index=True
    )
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent | None] = relationship(back_populates="accounts", lazy="raise")
    credentials: Mapped[ExchangeCredential | None] = relationship(lazy="raise")
    balances: Mapped[list[AccountBalance]] = relationship(
        back_populates="account", lazy="raise", passive_deletes=True
    )
    positions: Mapped[list[Position]] = relationship(
        back_populates="account", lazy="raise", passive_deletes=True
    )


class AccountBalance(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    """One asset of one account: `free` can be spent, `locked` backs open orders."""

    __tablename__ = "account_balances"
    __table_args__ = (
        UniqueConstraint("account_id", "asset"),
        *non_negative("free", "locked"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE")
    )
    asset: Mapped[str] = mapped_column(String(16))
    free: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    locked: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))

    account: Mapped[TradingAccount] = relationship(back_populates="balances", lazy="raise")


class Order(UUIDPrimaryKey, UserOwnedComposite, Timestamps, Base):
    __tablename__ = "orders"
    __table_args__ = (
        # NULL client ids are distinct, so orders without one never collide.
        UniqueConstraint("account_id", "client_order_id"),
        UniqueConstraint("account_id", "exchange_order_id"),
        one_of("side", OrderSide),
        one_of("order_type", OrderType),
        one_of("time_in_force", TimeInForce),
        one_of("stop_trigger", StopTrigger),
        one_of("status", OrderStatus),
        CheckConstraint("time_in_force <> 'GTD' OR expires_at IS NOT NULL", name="gtd_has_expiry"),
        CheckConstraint("post_only = false OR order_type = 'limit'", name="post_only_is_limit"),
        *positive("quantity", "price", "stop_price", "average_price", "notional"),
        *non_negative("filled_quantity", "fees", "locked_amount"),
        CheckConstraint(
            f"{num('filled_quantity')} <= {num('quantity')}", name="filled_within_quantity"
        ),
        CheckConstraint(
            "status <> 'filled' OR filled_quantity = quantity", name="filled_means_complete"
        ),
        CheckConstraint(
            "order_type NOT IN ('limit', 'stop_limit') OR price IS NOT NULL",
            name="limit_has_price",
        ),
        CheckConstraint(
            "order_type NOT IN ('stop', 'stop_limit') OR stop_price IS NOT NULL",
            name="stop_has_stop_price",
        ),
        # The matching loop scans open orders by symbol; the API lists them by account.
        Index("ix_orders_open_by_account", "account_id", **partial(_OPEN)),
        Index("ix_orders_open_by_symbol", "symbol", **partial(_OPEN)),
        Index("ix_orders_account_id_created_at", "account_id", "created_at"),
        # The user's orders in one status or one symbol, newest first: the order list's
        # filters (seed 001's idx_orders_user_status and idx_orders_symbol_created).
        # Ascending, as both databases read a B-tree backwards for created_at DESC;
        # led by user_id, so they also serve the CASCADE from users.
        Index("ix_orders_user_id_status_created_at", "user_id", "status", "created_at"),
        Index("ix_orders_user_id_symbol_created_at", "user_id", "symbol", "created_at"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE")
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"), index=True)
    decision_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agent_decisions.id", ondelete="SET NULL"), index=True
    )
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    exchange_order_id: Mapped[str | None] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16), default=OrderType.MARKET.value)
    time_in_force: Mapped[str] = mapped_column(String(3), default=TimeInForce.GTC.value)
    quantity: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal | None] = mapped_column(Money)
    stop_price: Mapped[Decimal | None] = mapped_column(Money)
    # Which price triggers a stop (ignored by other types, kept as 'last').
    stop_trigger: Mapped[str] = mapped_column(String(4), default=StopTrigger.LAST.value)
    # A limit that must not take liquidity: refused rather than crossing at placement.
    post_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # DAY and GTD orders expire (cancelled, their lock released) at this time.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A market buy for a cash amount: the quote amount asked for; `quantity` is what the
    # book gave for it.
    notional: Mapped[Decimal | None] = mapped_column(Money)
    # PATCH replaces an open order by a new version: the new one names the old.
    replaces_order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING.value)
    filled_quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    average_price: Mapped[Decimal | None] = mapped_column(Money)
    fees: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Quote (buy) or base (sell) amount moved from free to locked while the order is open.
    locked_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    strategy: Mapped[str | None] = mapped_column(String(100))
    reasoning: Mapped[str | None] = mapped_column(Text)
    market_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the order reached filled, cancelled or rejected.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[TradingAccount] = relationship(lazy="raise")
    decision: Mapped[AgentDecision | None] = relationship(lazy="raise")
    trades: Mapped[list[Trade]] = relationship(
        back_populates="order", lazy="raise", passive_deletes=True
    )


class Trade(UUIDPrimaryKey, UserOwnedComposite, Base):
    """One fill of an order."""

    __tablename__ = "trades"
    __table_args__ = (
        UniqueConstraint("account_id", "exchange_trade_id"),
        one_of("side", OrderSide),
        one_of("liquidity", Liquidity),
        *positive("quantity", "price"),
        *non_negative("fee"),
        Index("ix_trades_account_id_executed_at", "account_id", "executed_at"),
        # The user's fills across accounts, newest first (seed 001's
        # idx_trades_user_executed); also serves the CASCADE from users.
        Index("ix_trades_user_id_executed_at", "user_id", "executed_at"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE")
    )
    exchange_trade_id: Mapped[str | None] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    fee: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    fee_asset: Mapped[str] = mapped_column(String(16))
    liquidity: Mapped[str] = mapped_column(String(5))
    realized_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    executed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="trades", lazy="raise")


class Position(UUIDPrimaryKey, UserOwnedComposite, Timestamps, Base):
    """Spot holdings of one symbol in one account, at average cost; never short."""

    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("account_id", "symbol"),
        *non_negative("quantity", "avg_price", "cost_basis", "entry_fees"),
        # The user's holdings of one symbol across accounts (seed 001's
        # idx_positions_user_symbol); also serves the CASCADE from users.
        Index("ix_positions_user_id_symbol", "user_id", "symbol"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE")
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    avg_price: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # The exact cost of the held quantity; avg_price is cost_basis / quantity, rounded.
    cost_basis: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default="0")
    # The buy fees paid for the held quantity, released pro rata as it is sold: a
    # reduction's net result counts both its sell fee and its share of these.
    entry_fees: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default="0")
    realized_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    last_trade_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[TradingAccount] = relationship(back_populates="positions", lazy="raise")


class PortfolioSnapshot(UUIDPrimaryKey, UserOwned, Base):
    """An account's equity at the mark, taken periodically for charts and drawdown."""

    __tablename__ = "portfolio_snapshots"
    __table_args__ = (
        *non_negative("equity", "cash", "positions_value", "fees"),
        Index("ix_portfolio_snapshots_account_id_taken_at", "account_id", "taken_at"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE")
    )
    equity: Mapped[Decimal] = mapped_column(Money)
    cash: Mapped[Decimal] = mapped_column(Money)
    positions_value: Mapped[Decimal] = mapped_column(Money)
    realized_pnl: Mapped[Decimal] = mapped_column(Money)
    unrealized_pnl: Mapped[Decimal] = mapped_column(Money)
    fees: Mapped[Decimal] = mapped_column(Money)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
