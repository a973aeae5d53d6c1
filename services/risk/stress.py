"""Stress tests: what an account's positions would lose in a scenario, and which of its
limits it would then be over. Pure and `Decimal` only: the caller loads the account, its
holdings at the mark, their daily closes and the user's limits.

A shock is a price return as a fraction (-0.3: a 30% fall). Each position's price after
is price x (1 + shock), floored at 0; its PnL is quantity x (price after - price). The
account after has equity + the total PnL and each holding's exposure moved by its PnL
(a holding missing from `exposures` starts from its value), with its day-start and peak
equity unchanged so that daily_loss and max_drawdown see the fall; `limits.evaluate`
(no order) then says which limits it is over, and whether it already was.

The scenarios and their defaults (each overridable by the `ScenarioSpec` field named):

- crypto_crash: every crypto holding moves by `shock` (-0.3), every equity by
  `equity_shock` (0).
- single_asset_collapse: `symbol` (the largest holding by |value|, ties by symbol) moves
  by `shock` (-0.9).
- volatility_spike: each holding falls `sigmas` (3) times the sample standard deviation
  (n - 1) of its daily returns.
- correlation_breakdown: diversification fails: every holding moves at once by its own
  worst daily return, as if they were perfectly correlated.
- worst_day: the day of the history, among those on which every holding has a return,
  with the worst PnL for today's holdings (the earliest on a tie), every holding moved
  by its return of that day; none, with a note, when they share no day.
- custom: shocks per symbol and per asset class; a symbol's wins over its class's, and a
  holding neither names does not move. A shock of a symbol (or class) the account does
  not hold has no effect, and the result says so.

History: a daily return is between two consecutive stored closes of a symbol, dated by
the later one (a close given twice on a day counts once, the last); a pair whose earlier
close is not positive has none. Returns are rounded to 10 places. A holding with fewer
than `MIN_RETURNS` (20) returns lacks history for volatility_spike and
correlation_breakdown, which then use its asset class's default (`FALLBACK_DAILY_VOL`:
crypto 0.04, equity 0.02; `FALLBACK_WORST_DAY`: crypto -0.15, equity -0.08), flagged
on the position and listed in the notes.

Bad parameters (a shock below -1, a non-positive `sigmas`, a parameter of another
scenario, a custom shock naming both or neither of symbol and class, or a target twice)
raise `ValidationFailedError`; inconsistent holdings are the caller's bug (ValueError).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, localcontext
from itertools import pairwise

from core.exceptions import ValidationFailedError
from models.base import decimal_to_str
from models.enums import AssetClass
from models.risk import LimitType
from models.stress import ScenarioName, ScenarioResultRead, StressTestRead, StressTestRequest
from services.paper_trading.matching import MONEY_CONTEXT
from services.risk.limits import evaluate
from services.risk.state import ZERO, AccountState, LimitReading, LimitRule

History = Mapping[str, Sequence[tuple[date, Decimal]]]

DEFAULT_CRASH_SHOCK = Decimal("-0.3")
DEFAULT_CRASH_EQUITY_SHOCK = ZERO
DEFAULT_COLLAPSE_SHOCK = Decimal("-0.9")
DEFAULT_SIGMAS = Decimal(3)
MIN_RETURNS = 20
# Rough daily figures of the last years: a large crypto asset moves ~4% a day and has
# lost ~15% on its worst day of a year; a large-cap stock ~2% and ~8%.
FALLBACK_DAILY_VOL = {AssetClass.CRYPTO: Decimal("0.04"), AssetClass.EQUITY: Decimal("0.02")}
FALLBACK_WORST_DAY = {AssetClass.CRYPTO: Decimal("-0.15"), AssetClass.EQUITY: Decimal("-0.08")}
RETURN_QUANTUM = Decimal("1E-10")

_MIN_SHOCK = Decimal(-1)
_FRACTION_QUANTUM = Decimal("0.000001")
_PERCENT_QUANTUM = Decimal("0.01")
# The parameters each scenario takes; any other set on its spec is refused.
_PARAMETERS: dict[ScenarioName, frozenset[str]] = {
    ScenarioName.CRYPTO_CRASH: frozenset({"shock", "equity_shock"}),
    ScenarioName.SINGLE_ASSET_COLLAPSE: frozenset({"symbol", "shock"}),
    ScenarioName.VOLATILITY_SPIKE: frozenset({"sigmas"}),
    ScenarioName.CORRELATION_BREAKDOWN: frozenset(),
    ScenarioName.WORST_DAY: frozenset(),
    ScenarioName.CUSTOM: frozenset({"shocks"}),
}


@dataclass(frozen=True, slots=True)
class StressHolding:
    """A position at the mark: `price` the price the shock applies to."""

    symbol: str
    asset_class: AssetClass
    quantity: Decimal
    price: Decimal


@dataclass(frozen=True, slots=True)
class CustomShockSpec:
    """The return of one symbol's price, or of every holding of an asset class."""

    shock: Decimal
    symbol: str | None = None
    asset_class: AssetClass | None = None


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A scenario to run; None takes the default (module doc). Only the fields of its
    scenario may be set."""

    name: ScenarioName
    shock: Decimal | None = None
    equity_shock: Decimal | None = None
    symbol: str | None = None
    sigmas: Decimal | None = None
    shocks: tuple[CustomShockSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class PositionResult:
    symbol: str
    asset_class: AssetClass
    quantity: Decimal
    shock: Decimal
    price_before: Decimal
    price_after: Decimal
    value_before: Decimal
    value_after: Decimal
    pnl: Decimal
    history_fallback: bool = False
    note: str | None = None


@dataclass(frozen=True, slots=True)
class BreachResult:
    """A limit the account would be over after the shock: `measure_after` in the
    limit's units (services/risk/state.py)."""

    limit_id: uuid.UUID
    limit_type: LimitType
    symbol: str | None
    limit_value: Decimal
    measure_after: Decimal | None
    utilisation_after: Decimal | None
    already_breached: bool
    kill_on_breach: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One scenario on one account. `pnl_fraction` is pnl / equity_before (None when
    that is not positive); `state_after` is the account the limits were measured on."""

    name: ScenarioName
    description: str
    parameters: Mapping[str, str]
    replayed_day: date | None
    equity_before: Decimal
    equity_after: Decimal
    pnl: Decimal
    pnl_fraction: Decimal | None
    positions: tuple[PositionResult, ...]
    breaches: tuple[BreachResult, ...]
    notes: tuple[str, ...]
    state_after: AccountState


@dataclass(frozen=True, slots=True)
class _Move:
    shock: Decimal
    fallback: bool = False
    note: str | None = None


@dataclass(slots=True)
class _Plan:
    """What a scenario does to the holdings, before the arithmetic common to all."""

    description: str
    parameters: dict[str, str]
    moves: dict[str, _Move]
    notes: list[str] = field(default_factory=list)
    replayed_day: date | None = None


Returns = Mapping[str, Sequence[tuple[date, Decimal]]]
_Builder = Callable[[ScenarioSpec, Sequence[StressHolding], Returns], _Plan]


def run_scenarios(
    state: AccountState,
    holdings: Sequence[StressHolding],
    history: History,
    rules: Sequence[LimitRule],
    scenarios: Sequence[ScenarioSpec],
) -> list[ScenarioResult]:
    """Each scenario's PnL per position and in total, and the limits it would breach."""
    for spec in scenarios:
        _check(spec)
    _check_holdings(holdings)
    with localcontext(MONEY_CONTEXT):
        returns = {h.symbol: daily_returns(history.get(h.symbol, ())) for h in holdings}
        already = {r.rule.id: r.breached for r in evaluate(state, rules)}
        return [
            _apply(
                state, holdings, _BUILDERS[spec.name](spec, holdings, returns), spec, rules, already
            )
            for spec in scenarios
        ]


def daily_returns(closes: Sequence[tuple[date, Decimal]]) -> list[tuple[date, Decimal]]:
    """Simple returns of consecutive closes, dated by the later one (module doc)."""
    by_day = sorted(dict(closes).items())
    with localcontext(MONEY_CONTEXT):
        return [
            (day, _rounded(close / before - 1))
            for (_, before), (day, close) in pairwise(by_day)
            if before > 0
        ]


def specs_from_request(request: StressTestRequest) -> list[ScenarioSpec]:
    """The request's scenarios, in its order, with its parameters (None: the default)."""
    specs = []
    for name in request.scenario_names():
        if name is ScenarioName.CRYPTO_CRASH:
            crash = request.crypto_crash
            spec = ScenarioSpec(name, shock=crash.shock, equity_shock=crash.equity_shock)
        elif name is ScenarioName.SINGLE_ASSET_COLLAPSE:
            collapse = request.single_asset_collapse
            spec = ScenarioSpec(name, symbol=collapse.symbol, shock=collapse.shock)
        elif name is ScenarioName.VOLATILITY_SPIKE:
            spec = ScenarioSpec(name, sigmas=request.volatility_spike.sigmas)
        elif name is ScenarioName.CUSTOM:
            shocks = tuple(
                CustomShockSpec(s.shock, symbol=s.symbol, asset_class=s.asset_class)
                for s in request.custom
            )
            spec = ScenarioSpec(name, shocks=shocks)
        else:
            spec = ScenarioSpec(name)
        specs.append(spec)
    return specs


def stress_read(state: AccountState, results: Sequence[ScenarioResult]) -> StressTestRead:
    # The read models mirror the result dataclasses field for field.
    return StressTestRead(
        account_id=state.account_id,
        equity=state.equity,
        results=[ScenarioResultRead.model_validate(result) for result in results],
    )


def _check(spec: ScenarioSpec) -> None:
    given = {
        name
        for name, value in (
            ("shock", spec.shock),
            ("equity_shock", spec.equity_shock),
            ("symbol", spec.symbol),
            ("sigmas", spec.sigmas),
            ("shocks", spec.shocks or None),
        )
        if value is not None
    }
    foreign = sorted(given - _PARAMETERS[spec.name])
    if foreign:
        raise ValidationFailedError(
            f"{spec.name.value} takes no {', '.join(foreign)}",
            details={"scenario": spec.name.value, "fields": foreign},
        )
    for name, value in (("shock", spec.shock), ("equity_shock", spec.equity_shock)):
        if value is not None:
            _check_shock(spec.name, name, value)
    if spec.sigmas is not None and not (spec.sigmas.is_finite() and spec.sigmas > 0):
        raise _invalid(spec.name, "sigmas", spec.sigmas, "must be a positive number")
    if spec.name is ScenarioName.CUSTOM:
        _check_custom(spec.shocks)


def _check_custom(shocks: Sequence[CustomShockSpec]) -> None:
    name = ScenarioName.CUSTOM
    if not shocks:
        raise ValidationFailedError(
            "the custom scenario needs at least one shock", details={"scenario": name.value}
        )
    seen: set[tuple[str | None, AssetClass | None]] = set()
    for shock in shocks:
        if (shock.symbol is None) == (shock.asset_class is None):
            raise ValidationFailedError(
                "a custom shock names exactly one of symbol and asset_class",
                details={"scenario": name.value, "symbol": shock.symbol},
            )
        target = (shock.symbol, shock.asset_class)
        if target in seen:
            raise ValidationFailedError(
                f"{_target(shock)} has two custom shocks",
                details={"scenario": name.value, "target": _target(shock)},
            )
        seen.add(target)
        _check_shock(name, f"shock of {_target(shock)}", shock.shock)


def _check_shock(scenario: ScenarioName, name: str, value: Decimal) -> None:
    if not value.is_finite():
        raise _invalid(scenario, name, value, "must be a finite number")
    if value < _MIN_SHOCK:
        raise _invalid(scenario, name, value, "is below -1: a price cannot fall more than 100%")


def _invalid(scenario: ScenarioName, name: str, value: Decimal, what: str) -> ValidationFailedError:
    return ValidationFailedError(
        f"{scenario.value}: {name} {value} {what}",
        details={"scenario": scenario.value, "field": name, "value": str(value)},
    )


def _check_holdings(holdings: Sequence[StressHolding]) -> None:
    symbols = [h.symbol for h in holdings]
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"a symbol is held twice: {symbols}")
    if any(not h.price.is_finite() or h.price < 0 for h in holdings):
        raise ValueError("a holding's price is negative or not finite")


def _apply(
    state: AccountState,
    holdings: Sequence[StressHolding],
    plan: _Plan,
    spec: ScenarioSpec,
    rules: Sequence[LimitRule],
    already: Mapping[uuid.UUID, bool],
) -> ScenarioResult:
    positions = tuple(_position(h, plan.moves.get(h.symbol, _Move(ZERO))) for h in holdings)
    pnl = sum((p.pnl for p in positions), ZERO)
    exposures = dict(state.exposures)
    for p in positions:
        exposures[p.symbol] = exposures.get(p.symbol, p.value_before) + p.pnl
    after = replace(state, equity=state.equity + pnl, exposures=exposures)
    fraction = (pnl / state.equity).quantize(_FRACTION_QUANTUM) if state.equity > 0 else None
    return ScenarioResult(
        name=spec.name,
        description=plan.description,
        parameters=plan.parameters,
        replayed_day=plan.replayed_day,
        equity_before=state.equity,
        equity_after=after.equity,
        pnl=pnl,
        pnl_fraction=fraction,
        positions=positions,
        breaches=tuple(_breach(r, already) for r in evaluate(after, rules) if r.breached),
        notes=tuple(plan.notes),
        state_after=after,
    )


def _position(holding: StressHolding, move: _Move) -> PositionResult:
    price_after = max(ZERO, holding.price * (1 + move.shock))
    value_before = holding.quantity * holding.price
    value_after = holding.quantity * price_after
    return PositionResult(
        symbol=holding.symbol,
        asset_class=holding.asset_class,
        quantity=holding.quantity,
        shock=move.shock,
        price_before=holding.price,
        price_after=price_after,
        value_before=value_before,
        value_after=value_after,
        pnl=value_after - value_before,
        history_fallback=move.fallback,
        note=move.note,
    )


def _breach(reading: LimitReading, already: Mapping[uuid.UUID, bool]) -> BreachResult:
    rule = reading.rule
    return BreachResult(
        limit_id=rule.id,
        limit_type=rule.limit_type,
        symbol=rule.symbol,
        limit_value=rule.limit_value,
        measure_after=reading.current,
        utilisation_after=reading.utilisation,
        already_breached=already.get(rule.id, False),
        kill_on_breach=rule.kill_on_breach,
        reason=reading.reason,
    )


def _crypto_crash(spec: ScenarioSpec, holdings: Sequence[StressHolding], _: Returns) -> _Plan:
    crypto = DEFAULT_CRASH_SHOCK if spec.shock is None else spec.shock
    equity = DEFAULT_CRASH_EQUITY_SHOCK if spec.equity_shock is None else spec.equity_shock
    moves = {
        h.symbol: _Move(crypto if h.asset_class is AssetClass.CRYPTO else equity) for h in holdings
    }
    return _Plan(
        description=f"every crypto holding {_percent(crypto)}, every equity {_percent(equity)}",
        parameters={"shock": decimal_to_str(crypto), "equity_shock": decimal_to_str(equity)},
        moves=moves,
    )


def _single_asset_collapse(
    spec: ScenarioSpec, holdings: Sequence[StressHolding], _: Returns
) -> _Plan:
    shock = DEFAULT_COLLAPSE_SHOCK if spec.shock is None else spec.shock
    symbol = spec.symbol
    if symbol is None and holdings:
        symbol = min(holdings, key=lambda h: (-abs(h.quantity * h.price), h.symbol)).symbol
    plan = _Plan(
        description=f"{symbol or 'no holding'} {_percent(shock)}, the others unchanged",
        parameters={"shock": decimal_to_str(shock)} | ({"symbol": symbol} if symbol else {}),
        moves={},
    )
    if symbol is None:
        plan.notes.append("the account holds nothing: nothing collapses")
    elif all(h.symbol != symbol for h in holdings):
        plan.notes.append(f"{symbol} is not held: its collapse has no effect")
    else:
        plan.moves[symbol] = _Move(shock)
    return plan


def _volatility_spike(
    spec: ScenarioSpec, holdings: Sequence[StressHolding], returns: Returns
) -> _Plan:
    sigmas = DEFAULT_SIGMAS if spec.sigmas is None else spec.sigmas
    plan = _Plan(
        description=f"every holding falls {decimal_to_str(sigmas)} daily standard deviations",
        parameters={"sigmas": decimal_to_str(sigmas)},
        moves={},
    )
    for h in holdings:
        series = [r for _, r in returns[h.symbol]]
        if len(series) >= MIN_RETURNS:
            vol = _stdev(series)
            note = f"daily volatility {decimal_to_str(vol)} over {len(series)} returns"
            plan.moves[h.symbol] = _Move(_rounded(-sigmas * vol), note=note)
        else:
            vol = FALLBACK_DAILY_VOL[h.asset_class]
            note = _short(h, len(series), f"daily volatility {decimal_to_str(vol)}")
            plan.moves[h.symbol] = _Move(_rounded(-sigmas * vol), fallback=True, note=note)
    _note_fallbacks(plan)
    return plan


def _correlation_breakdown(
    _: ScenarioSpec, holdings: Sequence[StressHolding], returns: Returns
) -> _Plan:
    plan = _Plan(
        description="every holding moves at once by its own worst daily return",
        parameters={},
        moves={},
    )
    for h in holdings:
        series = returns[h.symbol]
        if len(series) >= MIN_RETURNS:
            day, worst = min(series, key=lambda dr: (dr[1], dr[0]))
            note = f"worst daily return {decimal_to_str(worst)} on {day.isoformat()}"
            plan.moves[h.symbol] = _Move(worst, note=note)
        else:
            worst = FALLBACK_WORST_DAY[h.asset_class]
            note = _short(h, len(series), f"worst daily return {decimal_to_str(worst)}")
            plan.moves[h.symbol] = _Move(worst, fallback=True, note=note)
    _note_fallbacks(plan)
    return plan


def _worst_day(_: ScenarioSpec, holdings: Sequence[StressHolding], returns: Returns) -> _Plan:
    plan = _Plan(
        description="today's holdings through the worst day of their history",
        parameters={},
        moves={},
    )
    by_day = {h.symbol: dict(returns[h.symbol]) for h in holdings}
    days = set.intersection(*(set(r) for r in by_day.values())) if by_day else set()
    if not days:
        bare = sorted(symbol for symbol, r in by_day.items() if not r)
        plan.notes.append(
            "the holdings' histories share no day: nothing replayed"
            + (f" ({', '.join(bare)} without any daily return)" if bare else "")
        )
        return plan

    def day_pnl(day: date) -> Decimal:
        return sum((h.quantity * h.price * by_day[h.symbol][day] for h in holdings), ZERO)

    worst = min(days, key=lambda day: (day_pnl(day), day))
    plan.replayed_day = worst
    plan.description = f"today's holdings through {worst.isoformat()}, their worst day"
    plan.parameters = {"day": worst.isoformat()}
    plan.moves = {h.symbol: _Move(by_day[h.symbol][worst]) for h in holdings}
    return plan


def _custom(spec: ScenarioSpec, holdings: Sequence[StressHolding], _: Returns) -> _Plan:
    by_symbol = {s.symbol: s.shock for s in spec.shocks if s.symbol is not None}
    by_class = {s.asset_class: s.shock for s in spec.shocks if s.asset_class is not None}
    plan = _Plan(
        description="custom shocks: "
        + ", ".join(f"{_target(s)} {_percent(s.shock)}" for s in spec.shocks),
        parameters={_target(s): decimal_to_str(s.shock) for s in spec.shocks},
        moves={},
    )
    for h in holdings:
        if h.symbol in by_symbol:
            plan.moves[h.symbol] = _Move(by_symbol[h.symbol])
        elif h.asset_class in by_class:
            plan.moves[h.symbol] = _Move(by_class[h.asset_class])
    held = {h.symbol for h in holdings}
    classes = {h.asset_class for h in holdings}
    for s in spec.shocks:
        if (s.symbol is not None and s.symbol not in held) or (
            s.asset_class is not None and s.asset_class not in classes
        ):
            plan.notes.append(f"{_target(s)} is not held: its shock has no effect")
    return plan


_BUILDERS: dict[ScenarioName, _Builder] = {
    ScenarioName.CRYPTO_CRASH: _crypto_crash,
    ScenarioName.SINGLE_ASSET_COLLAPSE: _single_asset_collapse,
    ScenarioName.VOLATILITY_SPIKE: _volatility_spike,
    ScenarioName.CORRELATION_BREAKDOWN: _correlation_breakdown,
    ScenarioName.WORST_DAY: _worst_day,
    ScenarioName.CUSTOM: _custom,
}


def _stdev(series: Sequence[Decimal]) -> Decimal:
    mean = sum(series, ZERO) / len(series)
    variance = sum(((r - mean) ** 2 for r in series), ZERO) / (len(series) - 1)
    return _rounded(variance.sqrt())


def _rounded(value: Decimal) -> Decimal:
    # Normalised so that 0.0500000000 reads 0.05; the value is the rounded one either way.
    return value.quantize(RETURN_QUANTUM).normalize()


def _short(holding: StressHolding, count: int, used: str) -> str:
    return (
        f"{count} daily returns, fewer than {MIN_RETURNS}: "
        f"the {holding.asset_class.value} default {used} used"
    )


def _note_fallbacks(plan: _Plan) -> None:
    short = sorted(symbol for symbol, move in plan.moves.items() if move.fallback)
    if short:
        plan.notes.append(f"too little price history, class defaults used: {', '.join(short)}")


def _target(shock: CustomShockSpec) -> str:
    if shock.symbol is not None:
        return shock.symbol
    return f"asset_class:{shock.asset_class.value if shock.asset_class else ''}"


def _percent(shock: Decimal) -> str:
    shown = decimal_to_str((shock * 100).quantize(_PERCENT_QUANTUM).normalize())
    return f"{'+' if shock > 0 else ''}{shown}%"
