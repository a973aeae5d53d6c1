"""Queries on risk: a user's limits, the kill switches, alerts and stored metrics.
Every owned query is scoped to the user. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Result,
    Select,
    and_,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from database.orm import (
    OPEN_ORDER_STATUSES,
    KillSwitch,
    Order,
    PortfolioSnapshot,
    Position,
    RiskAlert,
    RiskMetric,
    TradingAccount,
    TradingLimit,
)
from database.orm.types import Money

_OPEN = [s.value for s in OPEN_ORDER_STATUSES]

# -- limits ----------------------------------------------------------------------------


async def limits_of(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
    active: bool | None = None,
) -> list[TradingLimit]:
    """The user's limits, oldest first; with `account_id`, those holding on it (its own
    and the user's account-wide ones)."""
    query = select(TradingLimit).where(TradingLimit.user_id == user_id)
    if account_id is not None:
        query = query.where(
            or_(TradingLimit.account_id == account_id, TradingLimit.account_id.is_(None))
        )
    if active is not None:
        query = query.where(TradingLimit.is_active.is_(active))
    return list(await session.scalars(query.order_by(TradingLimit.created_at, TradingLimit.id)))


async def find_limit(
    session: AsyncSession, limit_id: uuid.UUID, *, user_id: uuid.UUID
) -> TradingLimit | None:
    query = select(TradingLimit).where(TradingLimit.id == limit_id, TradingLimit.user_id == user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def same_limit(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None,
    limit_type: str,
    symbol: str | None,
) -> TradingLimit | None:
    """The user's active limit of this type on this scope, if any."""
    query = select(TradingLimit).where(
        TradingLimit.user_id == user_id,
        TradingLimit.limit_type == limit_type,
        TradingLimit.is_active.is_(True),
        TradingLimit.account_id.is_(None)
        if account_id is None
        else TradingLimit.account_id == account_id,
        TradingLimit.symbol.is_(None) if symbol is None else TradingLimit.symbol == symbol,
    )
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def add_limit(session: AsyncSession, limit: TradingLimit) -> TradingLimit:
    session.add(limit)
    await session.flush()
    return limit


async def delete_limit(session: AsyncSession, limit: TradingLimit) -> None:
    await session.delete(limit)
    await session.flush()


async def set_current_values(
    session: AsyncSession, values: Iterable[tuple[uuid.UUID, Decimal]]
) -> None:
    """Writes each limit's measure as last seen (the monitor's)."""
    for limit_id, value in values:
        await session.execute(
            update(TradingLimit).where(TradingLimit.id == limit_id).values(current_value=value)
        )


async def users_with_limits(session: AsyncSession) -> list[uuid.UUID]:
    """Users with at least one active limit: the monitor's round."""
    query = select(TradingLimit.user_id).where(TradingLimit.is_active.is_(True)).distinct()
    return list(await session.scalars(query))


# -- kill switches ---------------------------------------------------------------------


def _engaged() -> Select[KillSwitch]:
    return select(KillSwitch).where(KillSwitch.released_at.is_(None))


async def engaged_over(
    session: AsyncSession, *, user_id: uuid.UUID, account_id: uuid.UUID
) -> list[KillSwitch]:
    """The engaged switches that stop this account: the global ones, the user's and
    the account's own."""
    query = _engaged().where(
        or_(
            KillSwitch.scope == "global",
            and_(KillSwitch.user_id == user_id, KillSwitch.account_id.is_(None)),
            KillSwitch.account_id == account_id,
        )
    )
    return list(await session.scalars(query.order_by(KillSwitch.engaged_at)))


async def switches_of(
    session: AsyncSession, *, user_id: uuid.UUID, engaged_only: bool
) -> list[KillSwitch]:
    """The user's switches and the global ones, newest first."""
    query = select(KillSwitch) if not engaged_only else _engaged()
    query = query.where(or_(KillSwitch.user_id == user_id, KillSwitch.scope == "global"))
    return list(await session.scalars(query.order_by(KillSwitch.engaged_at.desc()).limit(200)))


async def find_switch(
    session: AsyncSession, switch_id: uuid.UUID, *, user_id: uuid.UUID
) -> KillSwitch | None:
    query = select(KillSwitch).where(
        KillSwitch.id == switch_id,
        or_(KillSwitch.user_id == user_id, KillSwitch.scope == "global"),
    )
    return (await session.execute(query)).scalar_one_or_none()


async def add_switch(session: AsyncSession, switch: KillSwitch) -> KillSwitch:
    session.add(switch)
    await session.flush()
    return switch


# -- alerts ----------------------------------------------------------------------------


async def add_alert(session: AsyncSession, alert: RiskAlert) -> RiskAlert:
    session.add(alert)
    await session.flush()
    return alert


async def alerts_page(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None,
    acknowledged: bool | None,
    severities: Sequence[str],
    alert_types: Sequence[str],
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[RiskAlert], int]:
    """The user's alerts, newest first, and how many match in all."""
    conditions = [RiskAlert.user_id == user_id]
    if account_id is not None:
        conditions.append(RiskAlert.account_id == account_id)
    if acknowledged is not None:
        conditions.append(RiskAlert.acknowledged.is_(acknowledged))
    if severities:
        conditions.append(RiskAlert.severity.in_(severities))
    if alert_types:
        conditions.append(RiskAlert.alert_type.in_(alert_types))
    if since is not None:
        conditions.append(RiskAlert.created_at >= since)
    total = await session.scalar(select(func.count()).select_from(RiskAlert).where(*conditions))
    query = (
        select(RiskAlert)
        .where(*conditions)
        .order_by(RiskAlert.created_at.desc(), RiskAlert.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(await session.scalars(query)), int(total or 0)


async def alerts_by_id(
    session: AsyncSession, alert_ids: Sequence[uuid.UUID], *, user_id: uuid.UUID
) -> list[RiskAlert]:
    query = select(RiskAlert).where(RiskAlert.user_id == user_id, RiskAlert.id.in_(alert_ids))
    return list(await session.scalars(query))


async def open_alert(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID | None,
    alert_type: str,
    limit_id: uuid.UUID | None,
) -> RiskAlert | None:
    """The newest unacknowledged alert of this type (and limit) on the account: the
    monitor raises an alert once, not on every round."""
    query = select(RiskAlert).where(
        RiskAlert.user_id == user_id,
        RiskAlert.alert_type == alert_type,
        RiskAlert.acknowledged.is_(False),
        RiskAlert.account_id.is_(None)
        if account_id is None
        else RiskAlert.account_id == account_id,
        RiskAlert.limit_id.is_(None) if limit_id is None else RiskAlert.limit_id == limit_id,
    )
    return (
        await session.execute(query.order_by(RiskAlert.created_at.desc()).limit(1))
    ).scalar_one_or_none()


# -- metrics ---------------------------------------------------------------------------


async def add_metric(session: AsyncSession, metric: RiskMetric) -> RiskMetric:
    session.add(metric)
    await session.flush()
    return metric


async def latest_metric(
    session: AsyncSession, *, user_id: uuid.UUID, account_id: uuid.UUID | None
) -> RiskMetric | None:
    """The newest measurement of the account (None: of the user's accounts together)."""
    query = select(RiskMetric).where(
        RiskMetric.user_id == user_id,
        RiskMetric.account_id.is_(None)
        if account_id is None
        else RiskMetric.account_id == account_id,
    )
    query = query.order_by(RiskMetric.calculated_at.desc(), RiskMetric.id.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


# -- what the limits measure -----------------------------------------------------------


async def peak_equity(session: AsyncSession, account_id: uuid.UUID) -> Decimal | None:
    """The highest equity the account's snapshots recorded. Money is text on SQLite,
    where MAX would compare text: the rows are compared here, exactly. Read once per
    account; the pre-trade check keeps it up to date from there."""
    values = await session.scalars(
        select(PortfolioSnapshot.equity).where(PortfolioSnapshot.account_id == account_id)
    )
    return max(values, default=None)


async def accounts_in_scope(
    session: AsyncSession, *, user_id: uuid.UUID | None, account_id: uuid.UUID | None
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(user_id, account_id) of the active accounts a kill switch stops: one account,
    a user's, or (no user) every user's."""
    query = select(TradingAccount.user_id, TradingAccount.id).where(
        TradingAccount.is_active.is_(True)
    )
    if account_id is not None:
        query = query.where(TradingAccount.id == account_id)
    if user_id is not None:
        query = query.where(TradingAccount.user_id == user_id)
    query = query.order_by(TradingAccount.user_id, TradingAccount.created_at)
    return [(owner, account) for owner, account in (await session.execute(query)).all()]


async def switch_by_id(session: AsyncSession, switch_id: uuid.UUID) -> KillSwitch | None:
    """Internal: the switch whatever its scope (its engaging flow writes its effects)."""
    return (
        await session.execute(select(KillSwitch).where(KillSwitch.id == switch_id))
    ).scalar_one_or_none()


async def bump_risk_version(
    session: AsyncSession, *, user_id: uuid.UUID | None, account_id: uuid.UUID | None
) -> None:
    """The accounts a limit or a switch holds on (one, a user's, or with neither every
    account) must re-read their rules: their version moves, under their row locks (so
    it waits for an order of theirs in flight)."""
    query = update(TradingAccount).values(risk_version=TradingAccount.risk_version + 1)
    if account_id is not None:
        query = query.where(TradingAccount.id == account_id)
    elif user_id is not None:
        query = query.where(TradingAccount.user_id == user_id)
    await session.execute(query)


async def exposure_rows(
    session: AsyncSession, account_id: uuid.UUID
) -> list[tuple[str, str, Decimal, Decimal | None, Decimal | None, Decimal | None]]:
    """In one statement, (symbol, kind, quantity, price, stop price, filled) of the
    account's positions (kind "held", price its average) and open orders (kind their
    side, price their limit)."""
    held = select(
        Position.symbol,
        literal("held").label("kind"),
        Position.quantity,
        Position.avg_price.label("price"),
        cast(null(), Money).label("stop_price"),
        cast(null(), Money).label("filled"),
    ).where(Position.account_id == account_id)
    orders = select(
        Order.symbol,
        Order.side,
        Order.quantity,
        Order.price,
        Order.stop_price,
        Order.filled_quantity,
    ).where(Order.account_id == account_id, Order.status.in_(_OPEN))
    result: Result[Any] = await session.execute(union_all(held, orders))
    rows: Sequence[Any] = result.all()
    return [(row[0], row[1], row[2], row[3], row[4], row[5]) for row in rows]
