"""Typed async factories: each writes its rows in one committed transaction of its own
and returns the ORM object (detached; its columns stay loaded).

    user = await create_user(db)
    account = await create_account(db, user_id=user.id, cash="1000", balances={"BTC": "0.5"})

Amounts are `Decimal`, `str` or `int`, never `float`. Names and emails are unique per call.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from database.connection import Database
from database.orm import (
    AccountBalance,
    Agent,
    LLMCall,
    Order,
    Position,
    Strategy,
    Trade,
    TradingAccount,
    TradingPair,
    User,
)
from database.orm.types import utcnow

Amount = Decimal | str | int

_serial = itertools.count(1)


def _next() -> int:
    return next(_serial)


def _dec(value: Amount) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def _opt(value: Amount | None) -> Decimal | None:
    return None if value is None else _dec(value)


async def _save(db: Database, *rows: Any) -> None:
    async with db.transaction() as session:
        session.add_all(rows)


async def create_user(
    db: Database,
    *,
    email: str | None = None,
    display_name: str = "Test User",
    role: str = "user",
    is_active: bool = True,
    password_hash: str | None = None,
) -> User:
    user = User(
        id=uuid.uuid4(),
        email=email or f"user{_next()}-{uuid.uuid4().hex[:8]}@example.com",
        display_name=display_name,
        role=role,
        is_active=is_active,
        password_hash=password_hash,
    )
    await _save(db, user)
    return user


async def _owner(db: Database, user_id: uuid.UUID | None) -> uuid.UUID:
    return user_id if user_id is not None else (await create_user(db)).id


async def create_agent(
    db: Database,
    *,
    user_id: uuid.UUID | None = None,
    name: str | None = None,
    status: str = "inactive",
    llm_provider: str = "local",
    llm_model: str = "rule-based",
    symbols: Sequence[str] = ("BTC/USD",),
    strategies: Sequence[str] = (),
    paper_balance: Amount = "1000",
    risk_tolerance: Amount = "0.5",
    max_position_pct: Amount = "10",
    daily_cost_budget: Amount = "1",
    decision_interval_seconds: int = 60,
    personality: Mapping[str, Any] | None = None,
    deleted_at: datetime | None = None,
) -> Agent:
    agent = Agent(
        id=uuid.uuid4(),
        user_id=await _owner(db, user_id),
        name=name or f"Agent {_next()}",
        status=status,
        llm_provider=llm_provider,
        llm_model=llm_model,
        symbols=list(symbols),
        strategies=list(strategies),
        paper_balance=_dec(paper_balance),
        risk_tolerance=_dec(risk_tolerance),
        max_position_pct=_dec(max_position_pct),
        daily_cost_budget=_dec(daily_cost_budget),
        decision_interval_seconds=decision_interval_seconds,
        personality=dict(personality or {}),
        deleted_at=deleted_at,
    )
    await _save(db, agent)
    return agent


async def create_strategy(
    db: Database,
    *,
    user_id: uuid.UUID | None = None,
    name: str | None = None,
    strategy_type: str = "momentum",
    risk_level: str = "medium",
    parameters: Mapping[str, Any] | None = None,
) -> Strategy:
    strategy = Strategy(
        id=uuid.uuid4(),
        user_id=await _owner(db, user_id),
        name=name or f"Strategy {_next()}",
        strategy_type=strategy_type,
        risk_level=risk_level,
        parameters=dict(parameters or {}),
    )
    await _save(db, strategy)
    return strategy


async def create_account(
    db: Database,
    *,
    user_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
    cash: Amount = "1000",
    base_currency: str = "USD",
    balances: Mapping[str, Amount] | None = None,
    account_name: str | None = None,
    account_type: str = "paper",
    exchange: str = "simulated",
    is_default: bool = False,
    maker_fee_bps: Amount | None = "10",
    taker_fee_bps: Amount | None = "20",
) -> TradingAccount:
    """An account holding `cash` of its base currency (free), plus any other `balances`.
    Fee rates are the account's override (None: the pairs' schedules)."""
    owner = await _owner(db, user_id)
    account = TradingAccount(
        id=uuid.uuid4(),
        user_id=owner,
        agent_id=agent_id,
        account_name=account_name or f"Account {_next()}",
        account_type=account_type,
        exchange=exchange,
        base_currency=base_currency,
        initial_balance=_dec(cash),
        maker_fee_bps=_dec(maker_fee_bps) if maker_fee_bps is not None else None,
        taker_fee_bps=_dec(taker_fee_bps) if taker_fee_bps is not None else None,
        is_default=is_default,
    )
    holdings = {base_currency: _dec(cash), **{k: _dec(v) for k, v in (balances or {}).items()}}
    rows = [
        AccountBalance(user_id=owner, account_id=account.id, asset=asset, free=free)
        for asset, free in holdings.items()
    ]
    await _save(db, account, *rows)
    return account


async def create_trading_pair(
    db: Database,
    *,
    symbol: str = "BTC/USD",
    exchange: str = "simulated",
    asset_class: str = "crypto",
    tick_size: Amount = "0.01",
    step_size: Amount = "0.00001",
    min_quantity: Amount = "0.00001",
    max_quantity: Amount | None = "1000",
    min_notional: Amount = "10",
    maker_fee_bps: Amount = "10",
    taker_fee_bps: Amount = "20",
) -> TradingPair:
    base, quote = symbol.split("/")
    pair = TradingPair(
        id=uuid.uuid4(),
        exchange=exchange,
        symbol=symbol,
        base_asset=base,
        quote_asset=quote,
        asset_class=asset_class,
        tick_size=_dec(tick_size),
        step_size=_dec(step_size),
        min_quantity=_dec(min_quantity),
        max_quantity=_opt(max_quantity),
        min_notional=_dec(min_notional),
        maker_fee_bps=_dec(maker_fee_bps) if maker_fee_bps is not None else None,
        taker_fee_bps=_dec(taker_fee_bps) if taker_fee_bps is not None else None,
    )
    await _save(db, pair)
    return pair


async def create_order(
    db: Database,
    *,
    account: TradingAccount,
    symbol: str = "BTC/USD",
    side: str = "buy",
    order_type: str = "market",
    quantity: Amount = "0.01",
    price: Amount | None = None,
    stop_price: Amount | None = None,
    time_in_force: str = "GTC",
    status: str = "pending",
    filled_quantity: Amount = "0",
    average_price: Amount | None = None,
    locked_amount: Amount = "0",
    client_order_id: str | None = None,
    agent_id: uuid.UUID | None = None,
) -> Order:
    order = Order(
        id=uuid.uuid4(),
        user_id=account.user_id,
        account_id=account.id,
        agent_id=agent_id if agent_id is not None else account.agent_id,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        order_type=order_type,
        time_in_force=time_in_force,
        quantity=_dec(quantity),
        price=_opt(price),
        stop_price=_opt(stop_price),
        status=status,
        filled_quantity=_dec(filled_quantity),
        average_price=_opt(average_price),
        locked_amount=_dec(locked_amount),
    )
    await _save(db, order)
    return order


async def create_trade(
    db: Database,
    *,
    order: Order,
    quantity: Amount | None = None,
    price: Amount = "100",
    fee: Amount = "0",
    fee_asset: str = "USD",
    liquidity: str = "taker",
    realized_pnl: Amount = "0",
    executed_at: datetime | None = None,
) -> Trade:
    """A fill of `order` (all of it unless `quantity` says otherwise)."""
    trade = Trade(
        id=uuid.uuid4(),
        user_id=order.user_id,
        order_id=order.id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity if quantity is None else _dec(quantity),
        price=_dec(price),
        fee=_dec(fee),
        fee_asset=fee_asset,
        liquidity=liquidity,
        realized_pnl=_dec(realized_pnl),
        executed_at=executed_at or utcnow(),
    )
    await _save(db, trade)
    return trade


async def create_position(
    db: Database,
    *,
    account: TradingAccount,
    symbol: str = "BTC/USD",
    quantity: Amount = "1",
    avg_price: Amount = "100",
    realized_pnl: Amount = "0",
) -> Position:
    position = Position(
        id=uuid.uuid4(),
        user_id=account.user_id,
        account_id=account.id,
        agent_id=account.agent_id,
        symbol=symbol,
        quantity=_dec(quantity),
        avg_price=_dec(avg_price),
        realized_pnl=_dec(realized_pnl),
        last_trade_at=utcnow(),
    )
    await _save(db, position)
    return position


async def create_llm_call(
    db: Database,
    *,
    agent: Agent,
    provider: str = "local",
    model: str = "rule-based",
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cost: Amount = "0",
    latency_ms: int = 5,
) -> LLMCall:
    call = LLMCall(
        id=uuid.uuid4(),
        user_id=agent.user_id,
        agent_id=agent.id,
        provider=provider,
        model=model,
        request={"messages": [{"role": "user", "content": "decide"}]},
        raw_response='{"action": "hold"}',
        parsed={"action": "hold"},
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=_dec(cost),
        latency_ms=latency_ms,
    )
    await _save(db, call)
    return call
