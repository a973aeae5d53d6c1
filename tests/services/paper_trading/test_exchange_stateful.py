"""The paper exchange as a hypothesis state machine: three accounts trade one market
(BTC/USD), stepped by hand with thin books, on SQLite and on PostgreSQL.

Each example gets a fresh database (a copy of the test's own) holding the pair's row
before the app starts, so its fee schedule reaches the exchange the way production's
does (trading_pairs -> PairRules), and the real app on it. The schedule is drawn per
run: maker = taker (15/15), none (0/0) or the typical 10/20. Account 0 overrides it
(`trading_accounts.*_fee_bps`, both rates or one); accounts 1 and 2 have no override
(NULL) and pay the pair's. The rules: market, limit (GTC/IOC/FOK), stop and stop-limit
orders of either side, on the pair's tick and step, some far past what the account can
pay; cancels of an earlier open order; market steps with a few thin levels a side
(orders exhaust them and compete for them), steps that trade into the best resting
order a share at a time; a resting buy whose account then holds exactly its reserve
(its free cash swept out) filled over several steps; and deposits.

Checked after every rule: the ledger (ledger_check.ledger_problems), every fill's fee
at its account's rate, no fill of a resting order failing (`fill_errors`), and the
depth: within one market step the fills, maker and taker together, never take more at a
price or better than the step's book showed there, nor does the taker book still offer
what they took. At every order: a refused one (InsufficientFundsError, RuleViolation,
ValidationFailedError) leaves every account and the taker book exactly as they were;
an accepted one gets as taker exactly what that book offered (walked from the touch,
within its limit, all or nothing for FOK) and the book loses just that, so the next
order, of any account, gets the depth that is left.

Sized for CI: MAX_EXAMPLES=30 examples of STEPS_PER_EXAMPLE=30 steps (the opening is
one), derandomize=True and no example database, so every run tries the same examples.
On the development machine (2 cores shared with other suites) a passing run took 26-38 s
on SQLite and 39-42 s on PostgreSQL. A failing one then shrinks its example, one fresh
app per try: 2.5-5.5 minutes, hence its own timeout.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from connectors.base import BookLevel, OrderBook, Tick, Ticker
from core.config import Settings
from core.exceptions import ConflictError, InsufficientFundsError, ValidationFailedError
from database.connection import Database
from database.orm import OPEN_ORDER_STATUSES, AccountBalance, TradingAccount
from main_consolidated import create_app
from models.enums import Liquidity, OrderSide, OrderStatus, OrderType, TimeInForce
from models.trading import OrderCreate
from services.container import Services
from tests.api.conftest import running_app
from tests.conftest import pg_admin
from tests.factories import create_account, create_trading_pair, create_user
from tests.services.paper_trading.ledger_check import (
    Depth,
    FeeRates,
    Levels,
    StepDepth,
    differences,
    fee_problems,
    ledger_problems,
    read_holdings,
    snapshot_accounts,
    taker_book,
    walk,
    without,
)

D = Decimal
SYMBOL = "BTC/USD"
# Where the simulated market starts BTC (connectors/universe.py): the placement-time
# ticker that decides whether a new stop triggers at once stays there (the stream is off).
BASE = D("97000")
TICK = D("0.01")
STEP = D("0.00001")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPEN = frozenset(status.value for status in OPEN_ORDER_STATUSES)

SCHEDULES = ((D(15), D(15)), (D(0), D(0)), (D(10), D(20)))
# Account 0's override (maker, taker); None keeps the pair's rate for that liquidity.
OVERRIDES = ((D(25), D(25)), (D(2), D(30)), (D(25), None), (None, D(5)))
CASH = (D(1000), D(100), D(10000))
ACCOUNTS = st.integers(0, 2)
SIDES = st.sampled_from(OrderSide)
TIFS = st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK])
# In steps (1 is ~0.97 USD): mostly a level or two of a thin book, some below the 10 USD
# minimum, some the whole book, a few far past what any account can pay.
QUANTITIES = st.one_of(
    st.integers(5, 300), st.integers(5, 300), st.integers(300, 3000), st.integers(3000, 50_000)
).map(lambda n: STEP * n)
PRICES = st.integers(-1500, 1500).map(lambda cents: BASE + D(cents) / 100)

# CI sizing (see the module docstring for the time it takes).
MAX_EXAMPLES = 30
STEPS_PER_EXAMPLE = 30

P = ParamSpec("P")
R = TypeVar("R")
Placed = uuid.UUID | MultipleResults[uuid.UUID]


@dataclass(frozen=True)
class Step:
    """One market step: the book (best first on each side) and the last price."""

    bids: Levels
    asks: Levels
    last: Decimal

    def ticks(self) -> dict[str, Tick]:
        ticker = Ticker(SYMBOL, self.bids[0][0], self.asks[0][0], self.last, D(0), D(0), D(0), NOW)
        book = OrderBook(
            SYMBOL,
            tuple(BookLevel(price, quantity) for price, quantity in self.bids),
            tuple(BookLevel(price, quantity) for price, quantity in self.asks),
            NOW,
        )
        return {SYMBOL: Tick(ticker, book)}


def _levels(draw: st.DrawFn, start: int, direction: int, *, gap: int, depth: int) -> Levels:
    """1 to 4 levels from `start` cents off BASE, up to `gap` cents apart, each 1 to
    `depth` steps deep."""
    levels, cents = [], start
    for n in range(draw(st.integers(1, 4))):
        if n:
            cents += direction * draw(st.integers(1, gap))
        levels.append((BASE + D(cents) / 100, STEP * draw(st.integers(1, depth))))
    return tuple(levels)


@st.composite
def steps(draw: st.DrawFn, *, moves: int, gap: int, depth: int) -> Step:
    """A book around a mid up to `moves` cents off BASE, and a last price near it."""
    mid = draw(st.integers(-moves, moves))
    half_spread = draw(st.integers(1, 100))
    bids = _levels(draw, mid - half_spread, -1, gap=gap, depth=depth)
    asks = _levels(draw, mid + half_spread, 1, gap=gap, depth=depth)
    return Step(bids, asks, BASE + D(draw(st.integers(mid - moves, mid + moves))) / 100)


@dataclass(frozen=True)
class Env:
    """What the machine needs of the test's fixtures."""

    database_url: str
    make_settings: Callable[..., Settings]
    workdir: Path


def on_loop(
    method: Callable[Concatenate[PaperExchange, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[PaperExchange, P], R]:
    """A rule written as a coroutine, run to completion on the machine's event loop."""

    def run(machine: PaperExchange, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return machine.loop.run_until_complete(method(machine, *args, **kwargs))

    functools.update_wrapper(run, method)  # hypothesis prints the rule by its name
    return run


async def _cancel_leftovers() -> None:
    """Whatever the app left running once it stopped (nothing, when it stops cleanly)."""
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


class PaperExchange(RuleBasedStateMachine):
    """The app runs in a task of the machine's own event loop (started by the opening,
    stopped by `teardown`), so its lifespan enters and exits in one task while every
    rule runs on the same loop with `run_until_complete`."""

    orders = Bundle("orders")

    def __init__(self, env: Env) -> None:
        super().__init__()
        self.env = env
        self.loop = asyncio.new_event_loop()
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        self.accounts: list[TradingAccount] = []
        self.rates: dict[uuid.UUID, FeeRates] = {}
        self.owners: dict[uuid.UUID, int] = {}
        self.seen: set[uuid.UUID] = set()
        self.depth = StepDepth(0, Depth((), ()))
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        assert self._services is not None, "the market is not open"
        return self._services

    @property
    def ids(self) -> list[uuid.UUID]:
        return [account.id for account in self.accounts]

    # -- the run's database, app and accounts ------------------------------------------

    async def _fresh_database(self) -> str:
        """A copy of the test's migrated database, for this example alone."""
        url = make_url(self.env.database_url)
        template = url.database
        assert template is not None
        name = f"example_{uuid.uuid4().hex[:10]}"
        if url.get_backend_name() == "sqlite":
            path = self.env.workdir / f"{name}.db"
            shutil.copyfile(template, path)

            async def remove() -> None:
                for leftover in path.parent.glob(f"{path.name}*"):
                    leftover.unlink()

            self.cleanups.append(remove)
            return url.set(database=str(path)).render_as_string(hide_password=False)
        name = f"{template}_{name[-6:]}"
        await pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

        async def drop() -> None:
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        self.cleanups.append(drop)
        return url.set(database=name).render_as_string(hide_password=False)

    async def _start(self, url: str) -> None:
        app = create_app(
            self.env.make_settings(
                database={"url": url},
                redis={"url": ""},
                market_data={"market_data_stream": False},
                # The market is this test's one pair; the sample agents and pairs only slow
                # every example's start.
                load_seed_data=False,
            )
        )
        started, stopping = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with running_app(app):
                started.set()
                await stopping.wait()

        host = asyncio.create_task(serve())
        ready = asyncio.create_task(started.wait())
        await asyncio.wait({host, ready}, return_when=asyncio.FIRST_COMPLETED)
        if host.done():
            ready.cancel()
            host.result()  # the startup failure
        self._services = app.state.services

        async def stop() -> None:
            stopping.set()
            await host

        self.cleanups.append(stop)

    async def _open_account(
        self, cash: Decimal, override: tuple[Decimal | None, Decimal | None]
    ) -> TradingAccount:
        db = self.services.database.database
        user = await create_user(db)
        account = await create_account(db, user_id=user.id, cash=cash, is_default=True)
        maker, taker = override
        async with db.transaction() as session:
            # NULL: no override, the pair's schedule applies (services/paper_trading/fees.py).
            await session.execute(
                update(TradingAccount)
                .where(TradingAccount.id == account.id)
                .values(maker_fee_bps=maker, taker_fee_bps=taker)
            )
        return account

    @initialize(
        schedule=st.sampled_from(SCHEDULES),
        override=st.sampled_from(OVERRIDES),
        cash=st.tuples(*[st.sampled_from(CASH)] * 3),
        opening=st.tuples(*[st.sampled_from([300, 0, 3000])] * 3),
    )
    @on_loop
    async def open_market(
        self,
        schedule: tuple[Decimal, Decimal],
        override: tuple[Decimal | None, Decimal | None],
        cash: tuple[Decimal, Decimal, Decimal],
        opening: tuple[int, int, int],
    ) -> None:
        """The pair with `schedule` as its fees, three funded accounts (account 0 with
        `override`), and an opening step where each buys `opening` steps of BTC."""
        url = await self._fresh_database()
        pair_db = Database(url)
        try:
            await create_trading_pair(
                pair_db,
                symbol=SYMBOL,
                tick_size=TICK,
                step_size=STEP,
                min_quantity=STEP,
                max_quantity="1000",
                min_notional="10",
                maker_fee_bps=schedule[0],
                taker_fee_bps=schedule[1],
            )
        finally:
            await pair_db.dispose()
        await self._start(url)
        for n, amount in enumerate(cash):
            own = override if n == 0 else (None, None)
            account = await self._open_account(amount, own)
            self.accounts.append(account)
            self.rates[account.id] = FeeRates(
                own[0] if own[0] is not None else schedule[0],
                own[1] if own[1] is not None else schedule[1],
            )
        opening_step = Step(((BASE - D("0.5"), D("0.01")),), ((BASE + D("0.5"), D("0.1")),), BASE)
        await self._step(opening_step)
        for n, count in enumerate(opening):
            # At most half the account's cash, so it still has some to trade with.
            quantity = min(STEP * count, (cash[n] / 2 / BASE).quantize(STEP, ROUND_DOWN))
            if quantity:
                await self._place(n, side=OrderSide.BUY, quantity=quantity)

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self._close())
        finally:
            self.loop.run_until_complete(_cancel_leftovers())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _close(self) -> None:
        for cleanup in reversed(self.cleanups):
            await cleanup()

    # -- the market moves ----------------------------------------------------------------

    async def _step(self, step: Step) -> None:
        self.depth = StepDepth(self.depth.number + 1, Depth(step.bids, step.asks))
        await self.services.paper_trading.on_ticks(step.ticks())

    @rule(step=steps(moves=1000, gap=300, depth=300))
    @on_loop
    async def market_steps(self, step: Step) -> None:
        await self._step(step)

    @rule(step=steps(moves=500, gap=50, depth=30))
    @on_loop
    async def thin_market_steps(self, step: Step) -> None:
        """A step with a few steps of depth at each level: resting orders it crosses fill
        in small parts, over several steps."""
        await self._step(step)

    @rule(
        side=SIDES,
        through=st.integers(0, 100),
        share=st.integers(1, 100),
        spread=st.integers(1, 100),
    )
    @on_loop
    async def market_trades_into_resting(
        self, side: OrderSide, through: int, share: int, spread: int
    ) -> None:
        """A step whose book reaches the best resting limit of `side` (a buy: asks from
        `through` cents below its price; a sell: bids as far above it) with `share`% of
        that order's rest there: it fills the order in parts, over such steps, at a price
        where its fees may round. With no such order, a thin step at BASE."""
        holdings = await read_holdings(self.services, self.ids)
        resting = sorted(
            (
                order
                for h in holdings.values()
                for order in h.orders.values()
                if order.status in OPEN and order.side == side and order.price is not None
            ),
            key=lambda order: order.price or D(0),
            reverse=side is OrderSide.BUY,
        )
        buy = side is OrderSide.BUY
        limit, depth = BASE, STEP * share
        if resting:
            best = resting[0]
            limit = best.price or BASE
            rest = (best.quantity - best.filled_quantity) * share / 100
            depth = max(STEP, rest.quantize(STEP, ROUND_DOWN))
        touch = limit - D(through) / 100 if buy else limit + D(through) / 100
        gap = D(spread) / 100
        reach = ((touch, depth), (touch + gap if buy else touch - gap, STEP * 300))
        away = ((touch - gap if buy else touch + gap, STEP * 300),)
        bids, asks = (away, reach) if buy else (reach, away)
        await self._step(Step(bids, asks, touch))

    # -- orders --------------------------------------------------------------------------

    def _takes(self, request: OrderCreate) -> tuple[bool, Decimal | None]:
        """Whether the order trades as taker the moment it is placed, and its limit: a
        stop only when the market's last price already triggers it."""
        if request.order_type in (OrderType.MARKET, OrderType.LIMIT):
            return True, request.price
        assert request.stop_price is not None
        last = self.services.market_data.ticker(SYMBOL).last
        buy = request.side is OrderSide.BUY
        triggered = last >= request.stop_price if buy else last <= request.stop_price
        return triggered, request.price

    async def _place(self, who: int, **fields: Any) -> Placed:
        services, account = self.services, self.accounts[who]
        request = OrderCreate.model_validate({"symbol": SYMBOL, "account_id": account.id, **fields})
        book = taker_book(services, SYMBOL)
        before = await snapshot_accounts(services, self.ids)
        refusal: Exception | None = None
        try:
            placed = await services.paper_trading.place_order(account.user_id, request)
        except (InsufficientFundsError, ValidationFailedError) as error:
            refusal = error
        if refusal is not None:
            changes = differences(before, await snapshot_accounts(services, self.ids))
            assert not changes, f"refused ({refusal}), yet it changed:\n" + "\n".join(changes)
            after = taker_book(services, SYMBOL)
            assert after == book, (
                f"refused ({refusal}), yet the taker book changed from {book} to {after}"
            )
            return multiple()
        self.owners[placed.id] = who
        takes, limit = self._takes(request)
        buy = request.side is OrderSide.BUY
        offered = walk(book.side(request.side), placed.quantity, buy=buy, limit=limit)
        if not takes or (
            request.time_in_force is TimeInForce.FOK
            and sum((q for _, q in offered), D(0)) < placed.quantity
        ):
            offered = ()
        got = tuple((f.price, f.quantity) for f in placed.fills if f.liquidity is Liquidity.TAKER)
        assert got == offered, f"the order took {got}; the book {book} offered {offered}"
        after = taker_book(services, SYMBOL)
        assert after == without(book, request.side, got), (
            f"the book went from {book} to {after}, the order took {got}"
        )
        # Only what stays open is worth cancelling later.
        return placed.id if placed.status.value in OPEN else multiple()

    @rule(target=orders, who=ACCOUNTS, side=SIDES, quantity=QUANTITIES, tif=TIFS)
    @on_loop
    async def market_order(
        self, who: int, side: OrderSide, quantity: Decimal, tif: TimeInForce
    ) -> Placed:
        return await self._place(
            who, side=side, quantity=quantity, order_type=OrderType.MARKET, time_in_force=tif
        )

    @rule(target=orders, who=ACCOUNTS, side=SIDES, quantity=QUANTITIES, price=PRICES, tif=TIFS)
    @on_loop
    async def limit_order(
        self, who: int, side: OrderSide, quantity: Decimal, price: Decimal, tif: TimeInForce
    ) -> Placed:
        return await self._place(
            who,
            side=side,
            quantity=quantity,
            order_type=OrderType.LIMIT,
            price=price,
            time_in_force=tif,
        )

    @rule(
        target=orders,
        who=ACCOUNTS,
        side=SIDES,
        quantity=QUANTITIES,
        stop=PRICES,
        limit=st.none() | PRICES,
        tif=TIFS,
    )
    @on_loop
    async def stop_order(
        self,
        who: int,
        side: OrderSide,
        quantity: Decimal,
        stop: Decimal,
        limit: Decimal | None,
        tif: TimeInForce,
    ) -> Placed:
        return await self._place(
            who,
            side=side,
            quantity=quantity,
            order_type=OrderType.STOP if limit is None else OrderType.STOP_LIMIT,
            stop_price=stop,
            price=limit,
            time_in_force=tif,
        )

    @rule(order=orders)
    @on_loop
    async def cancel(self, order: uuid.UUID) -> None:
        services, account = self.services, self.accounts[self.owners[order]]
        book = taker_book(services, SYMBOL)
        before = await snapshot_accounts(services, self.ids)
        try:
            cancelled = await services.paper_trading.cancel_order(account.user_id, order)
        except ConflictError:
            changes = differences(before, await snapshot_accounts(services, self.ids))
            assert not changes, "a refused cancel changed:\n" + "\n".join(changes)
        else:
            assert cancelled.status is OrderStatus.CANCELLED
            assert cancelled.locked_amount == 0
        assert taker_book(services, SYMBOL) == book, "a cancel changed the taker book"

    @rule(
        target=orders,
        who=ACCOUNTS,
        quantity=st.integers(11, 300).map(lambda n: STEP * n),
        below=st.integers(1, 2000),
        parts=st.integers(1, 6),
    )
    @on_loop
    async def all_in_buy(self, who: int, quantity: Decimal, below: int, parts: int) -> Placed:
        """A buy resting `below` cents under the ask, the account's free cash swept (its
        cash is then exactly what its open orders reserve), then `parts` market steps,
        each offering an equal share of the order's rest at its price: many small maker
        fills at a price where fees round, and none may cost more than was reserved.
        Then the cash comes back, so the account goes on trading."""
        asks = taker_book(self.services, SYMBOL).asks
        price = (asks[0][0] if asks else BASE) - D(below) / 100
        placed = await self._place(
            who, side=OrderSide.BUY, quantity=quantity, order_type=OrderType.LIMIT, price=price
        )
        if isinstance(placed, MultipleResults):
            return placed
        account_id = self.ids[who]
        swept = await self._sweep(who)
        for left in range(parts, 0, -1):
            await self._check()
            order = (await read_holdings(self.services, [account_id]))[account_id].orders[placed]
            rest = order.quantity - order.filled_quantity
            if not rest or order.status not in OPEN:
                break
            share = max(STEP, (rest / left).quantize(STEP, ROUND_UP))
            await self._step(
                Step(
                    ((price - TICK, STEP * 300),), ((price, share), (price + 1, STEP * 300)), price
                )
            )
        await self._check()
        await self._transfer(who, swept)
        return placed

    @rule(who=ACCOUNTS, amount=st.sampled_from(CASH))
    @on_loop
    async def deposit(self, who: int, amount: Decimal) -> None:
        await self._transfer(who, amount)

    async def _sweep(self, who: int) -> Decimal:
        """All the account's free cash leaves it: what stays is exactly what its open
        orders reserve."""
        account_id = self.ids[who]
        free = (await read_holdings(self.services, [account_id]))[account_id].free("USD")
        await self._transfer(who, -free)
        return free

    async def _transfer(self, who: int, amount: Decimal) -> None:
        """Cash in (or out, negative) of the account, its initial balance moved with it so
        the ledger still balances. The exchange has no transfers: the test writes them."""
        account_id = self.accounts[who].id
        async with self.services.database.database.transaction() as session:
            cash = await session.scalar(
                select(AccountBalance).where(
                    AccountBalance.account_id == account_id, AccountBalance.asset == "USD"
                )
            )
            account = await session.get(TradingAccount, account_id)
            assert cash is not None
            assert account is not None
            cash.free += amount
            account.initial_balance += amount

    # -- after every step ----------------------------------------------------------------

    @invariant()
    @on_loop
    async def the_books_hold(self) -> None:
        await self._check()

    async def _check(self) -> None:
        holdings = await read_holdings(self.services, self.ids)
        ledger = ledger_problems(holdings)
        assert not ledger, "the ledger does not hold:\n" + "\n".join(ledger)
        fees = fee_problems(holdings, self.rates)
        assert not fees, "fees off the account's rates:\n" + "\n".join(fees)
        new = [t for h in holdings.values() for t in h.trades.values() if t.id not in self.seen]
        self.seen.update(t.id for t in new)
        self.depth.fills += new
        offered = taker_book(self.services, SYMBOL)
        overfilled = self.depth.overfilled(offered)
        assert not overfilled, "fills took more than the book showed:\n" + "\n".join(overfilled)
        counted = self.depth.still_offered(offered)
        assert not counted, "depth counted twice:\n" + "\n".join(counted)
        failures = self.services.paper_trading.fill_errors
        stuck = [
            f"{o.side} {o.order_type} {o.quantity} @ {o.price}: {o.status}, filled "
            f"{o.filled_quantity}, locks {o.locked_amount}"
            for h in holdings.values()
            for o in h.orders.values()
            if o.status in OPEN
        ]
        assert not failures, f"{failures} resting fills failed; open orders: {stuck}"


# Shrinking, not the explain phase: it traces every line and would take minutes here.
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    stateful_step_count=STEPS_PER_EXAMPLE,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# A failing run shrinks its example, one fresh app per try: give it the time.
@pytest.mark.timeout(900)
def test_the_exchange_keeps_its_books_whatever_three_accounts_do(
    database_url: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    env = Env(database_url, make_settings, tmp_path)
    # Any factory of a machine will do (hypothesis's docs); its stub asks for the class.
    run_state_machine_as_test(lambda: PaperExchange(env), settings=SETTINGS)  # type: ignore[arg-type]
