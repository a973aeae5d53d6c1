"""The pre-trade check every new order passes, whoever places it: the paper API, agents,
rebalances, closes (and later live orders). The paper exchange calls it inside the
order's transaction, under the account's lock (services/paper_trading/placing.py):

1. `prepare` (awaited before the order takes depth): an engaged kill switch over the
   account (global, the user's, the account's) refuses the order with a 409, except a
   sell of the switch's own flattening. Then the user's active limits that hold on the
   account are read and, only if there are any, what they measure (services/risk/state.py).
2. `check` (synchronous, once it is known what the order takes): the limits are
   evaluated with the order (services/risk/limits.py); any breach refuses it with a 422
   that names each limit and the numbers.

A flattening sell passes every limit: it only lowers risk, and it is what the switch
asked for. Reading under the account's lock means two orders of one account cannot both
pass on the same room; limits of other accounts do not interact.

Kept in memory per account:

- its rules (the engaged switches and active limits over it), with the account's
  `risk_version` they were read at. Every change to a limit or a switch bumps the
  version of the accounts it holds on, in its own transaction and under their row
  locks; the check reads the version with the account it locks, so it re-reads the
  rules exactly when they changed, on any instance, and an order in flight finishes
  before a switch commits;
- the day's starting equity (per UTC day) and the equity peak (read once from the
  snapshots, then raised by every equity seen); a reset of the account forgets both.

What the limits measure (positions and open orders) is read in one statement, and only
when a limit needs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, localcontext
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from core.exceptions import KillSwitchEngagedError, RiskLimitExceededError
from database.orm import KillSwitch, TradingAccount, TradingLimit
from database.orm.types import utcnow
from database.repositories import portfolio as portfolio_repo
from database.repositories import risk as risk_repo
from models.base import decimal_to_str
from models.enums import OrderSide
from models.risk import LimitType
from services.paper_trading import ledger
from services.paper_trading.matching import MONEY_CONTEXT
from services.paper_trading.placing import Placement, PreparedCheck
from services.risk.limits import breaches, evaluate
from services.risk.state import ZERO, AccountState, LimitReading, LimitRule, OrderIntent

_EQUITY_TYPES = frozenset(
    {LimitType.DAILY_LOSS, LimitType.MAX_DRAWDOWN, LimitType.LEVERAGE, LimitType.POSITION_SIZE}
)
_EXPOSURE_TYPES = frozenset({LimitType.POSITION_SIZE, LimitType.GROSS_EXPOSURE, LimitType.LEVERAGE})


class Marks(Protocol):
    def mark_price(self, symbol: str) -> Decimal | None: ...


def rule_of(limit: TradingLimit) -> LimitRule:
    return LimitRule(
        id=limit.id,
        limit_type=LimitType(limit.limit_type),
        limit_value=limit.limit_value,
        symbol=limit.symbol,
        account_id=limit.account_id,
        kill_on_breach=limit.kill_on_breach,
    )


@dataclass(frozen=True, slots=True)
class Switch:
    id: uuid.UUID
    scope: str
    reason: str
    engaged_at: datetime


@dataclass(frozen=True, slots=True)
class Rules:
    """What holds on an account, as read at its `version`."""

    version: int
    switches: tuple[Switch, ...]
    limits: tuple[LimitRule, ...]


def switch_message(switches: Sequence[Switch | KillSwitch]) -> str:
    first = switches[0]
    return (
        f"the {first.scope} kill switch engaged at {first.engaged_at.isoformat()} "
        f"stops this account ({first.reason}); release it to trade again"
    )


@dataclass(frozen=True, slots=True)
class _Limited:
    state: AccountState
    rules: Sequence[LimitRule]
    on_refusal: Callable[[], None]

    def check(self, *, symbol: str, side: OrderSide, notional: Decimal, rests: bool) -> None:
        intent = OrderIntent(symbol=symbol, side=side, notional=notional, rests=rests)
        breached = breaches(evaluate(self.state, self.rules, intent))
        if breached:
            self.on_refusal()
            raise refusal(breached, intent)


def refusal(breached: Sequence[LimitReading], intent: OrderIntent) -> RiskLimitExceededError:
    names = "; ".join(f"{r.rule.limit_type.value}: {r.reason}" for r in breached)
    return RiskLimitExceededError(
        f"the order would breach {len(breached)} risk limit{'s' if len(breached) > 1 else ''}: "
        f"{names}",
        details={
            "order_notional": decimal_to_str(intent.notional),
            "limits": [reading_details(r) for r in breached],
        },
    )


def reading_details(reading: LimitReading) -> dict[str, object]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else decimal_to_str(value)

    return {
        "limit_id": str(reading.rule.id),
        "limit_type": reading.rule.limit_type.value,
        "symbol": reading.rule.symbol,
        "limit_value": decimal_to_str(reading.rule.limit_value),
        "current": text(reading.current),
        "projected": text(reading.projected),
        "utilisation": text(reading.utilisation),
        "reason": reading.reason,
    }


class RiskGate:
    """Implements the paper exchange's PreTradeCheck (see the module doc)."""

    def __init__(self, marks: Marks, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._marks = marks
        self._clock = clock
        self._peaks: dict[uuid.UUID, Decimal] = {}
        # None: reset today, the day starts from the starting balance.
        self._day_starts: dict[uuid.UUID, tuple[date, Decimal | None]] = {}
        self._rules: dict[uuid.UUID, Rules] = {}
        self.rule_reads = 0
        self.checked = 0
        self.refused = 0

    def forget_account(self, account_id: uuid.UUID) -> None:
        """The account was reset (its history deleted): its peak is read anew, and its
        day starts from its new starting balance."""
        self._peaks.pop(account_id, None)
        self._day_starts[account_id] = (self._clock().astimezone(UTC).date(), None)

    async def rules(self, session: AsyncSession, account: TradingAccount) -> Rules:
        """The engaged switches and active limits over the account (module doc)."""
        cached = self._rules.get(account.id)
        if cached is not None and cached.version == account.risk_version:
            return cached
        self.rule_reads += 1
        switches = await risk_repo.engaged_over(
            session, user_id=account.user_id, account_id=account.id
        )
        limits = await risk_repo.limits_of(
            session, user_id=account.user_id, account_id=account.id, active=True
        )
        fresh = Rules(
            account.risk_version,
            tuple(Switch(s.id, s.scope, s.reason, s.engaged_at) for s in switches),
            tuple(rule_of(limit) for limit in limits),
        )
        self._rules[account.id] = fresh
        return fresh

    async def halted(self, session: AsyncSession, book: ledger.Book) -> bool:
        return bool((await self.rules(session, book.account)).switches)

    async def prepare(
        self, session: AsyncSession, book: ledger.Book, new: Placement
    ) -> PreparedCheck | None:
        self.checked += 1
        rules = await self.rules(session, book.account)
        switches = rules.switches
        if new.flatten and new.draft.side is OrderSide.SELL:
            return None
        if switches:
            self.refused += 1
            raise KillSwitchEngagedError(
                switch_message(switches),
                details={"kill_switch_id": str(switches[0].id), "scope": switches[0].scope},
            )
        if not rules.limits:
            return None
        state = await self.account_state(session, book, rules.limits)
        return _Limited(state, rules.limits, self._count_refusal)

    def _count_refusal(self) -> None:
        self.refused += 1

    async def account_state(
        self, session: AsyncSession, book: ledger.Book, rules: Sequence[LimitRule] | None = None
    ) -> AccountState:
        """The account as `rules` measure it (every measure with None): only what they
        need is read."""
        kinds = {rule.limit_type for rule in rules} if rules is not None else set(LimitType)
        account = book.account
        equity, exposures, open_orders = ZERO, dict[str, Decimal](), dict[str, int]()
        if kinds & (_EQUITY_TYPES | _EXPOSURE_TYPES | {LimitType.MAX_OPEN_ORDERS}):
            equity, exposures, open_orders = await self._valuation(
                session, book, exposures=bool(kinds & _EXPOSURE_TYPES)
            )
        day_start = (
            await self._day_start(session, account) if LimitType.DAILY_LOSS in kinds else None
        )
        peak = (
            await self._peak(session, account, equity) if LimitType.MAX_DRAWDOWN in kinds else None
        )
        return AccountState(
            account_id=account.id,
            equity=equity,
            day_start_equity=day_start,
            peak_equity=peak,
            exposures=exposures,
            open_orders=open_orders,
        )

    async def _valuation(
        self, session: AsyncSession, book: ledger.Book, *, exposures: bool
    ) -> tuple[Decimal, dict[str, Decimal], dict[str, int]]:
        """(equity, exposure per symbol, open orders per symbol), in one read: cash
        plus holdings at the mark (the average price when the market has none);
        exposure adds the open buys' remainders at their limit (else stop, else mark)."""
        account = book.account
        cash = book.free(account.base_currency) + book.locked(account.base_currency)
        values: dict[str, Decimal] = {}
        buys: dict[str, Decimal] = {}
        counts: dict[str, int] = {}
        with localcontext(MONEY_CONTEXT):
            for symbol, kind, quantity, price, stop, filled in await risk_repo.exposure_rows(
                session, account.id
            ):
                if kind == "held":
                    if quantity > 0:
                        mark = self._marks.mark_price(symbol) or price or ZERO
                        values[symbol] = quantity * mark
                    continue
                counts[symbol] = counts.get(symbol, 0) + 1
                if kind == OrderSide.BUY.value:
                    unit = price or stop or self._marks.mark_price(symbol) or ZERO
                    buys[symbol] = buys.get(symbol, ZERO) + (quantity - (filled or ZERO)) * unit
            equity = cash + sum(values.values(), ZERO)
            if exposures:
                for symbol, committed in buys.items():
                    values[symbol] = values.get(symbol, ZERO) + committed
        return equity, values, counts

    async def _day_start(self, session: AsyncSession, account: TradingAccount) -> Decimal:
        """The equity the UTC day started with: the starting balance of an account
        opened (or reset, as this instance saw) today; else the last snapshot before
        midnight; with none (snapshots off, or a reset on another instance deleted
        them), the day's first snapshot; with none either, the starting balance."""
        today = self._clock().astimezone(UTC).date()
        cached = self._day_starts.get(account.id)
        if cached is not None and cached[0] == today:
            return cached[1] if cached[1] is not None else account.initial_balance
        midnight = datetime.combine(today, time(0), tzinfo=UTC)
        if account.created_at >= midnight:
            return account.initial_balance
        latest = await portfolio_repo.latest_snapshot_at_or_before(
            session, account.id, user_id=account.user_id, at=midnight
        )
        value = None if latest is None else latest[0]
        if value is None:
            value = await portfolio_repo.first_snapshot_since(
                session, account.id, user_id=account.user_id, since=midnight
            )
        if value is None:
            # Not kept: the day's first snapshot, when it comes, is the better answer.
            return account.initial_balance
        self._day_starts[account.id] = (today, value)
        return value

    async def _peak(
        self, session: AsyncSession, account: TradingAccount, equity: Decimal
    ) -> Decimal:
        peak = self._peaks.get(account.id)
        if peak is None:
            stored = await risk_repo.peak_equity(session, account.id)
            peak = max(account.initial_balance, stored or ZERO)
        peak = max(peak, equity)
        self._peaks[account.id] = peak
        return peak
