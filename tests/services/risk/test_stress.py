"""Stress scenarios on a hand-computed three-holding account.

The account: equity 10000 (day start 10000, peak 12000), of which 2000 cash and
    BTC/USD  crypto  0.1 x 40000 = 4000
    ETH/USD  crypto  1   x  2000 = 2000
    AAPL     equity  10  x   200 = 2000
its exposures are those values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from core.exceptions import ValidationFailedError
from models.enums import AssetClass
from models.risk import LimitType
from models.stress import (
    BUILT_IN_SCENARIOS,
    CryptoCrashParams,
    ScenarioName,
    SingleAssetCollapseParams,
    StressTestRequest,
    VolatilitySpikeParams,
)
from services.risk.state import AccountState, LimitRule
from services.risk.stress import (
    DEFAULT_COLLAPSE_SHOCK,
    DEFAULT_CRASH_EQUITY_SHOCK,
    DEFAULT_CRASH_SHOCK,
    DEFAULT_SIGMAS,
    CustomShockSpec,
    History,
    ScenarioResult,
    ScenarioSpec,
    StressHolding,
    daily_returns,
    run_scenarios,
    specs_from_request,
    stress_read,
)

D = Decimal
BTC, ETH, AAPL = "BTC/USD", "ETH/USD", "AAPL"
ACCOUNT = uuid.uuid4()
STATE = AccountState(
    account_id=ACCOUNT,
    equity=D(10000),
    day_start_equity=D(10000),
    peak_equity=D(12000),
    exposures={BTC: D(4000), ETH: D(2000), AAPL: D(2000)},
)
HOLDINGS = (
    StressHolding(BTC, AssetClass.CRYPTO, D("0.1"), D(40000)),
    StressHolding(ETH, AssetClass.CRYPTO, D(1), D(2000)),
    StressHolding(AAPL, AssetClass.EQUITY, D(10), D(200)),
)
START = date(2024, 1, 1)


def closes(returns: Sequence[str], start: str = "100") -> list[tuple[date, Decimal]]:
    """Daily closes from START with these returns. The chained products are rounded to
    28 digits, which the 10-place rounding of the returns read back removes."""
    series = [(START, D(start))]
    for i, r in enumerate(returns, 1):
        series.append((START + timedelta(days=i), series[-1][1] * (1 + D(r))))
    return series


# 21 returns, ten +a, ten -a and one 0: mean 0, sum of squares 20a^2, sample variance
# 20a^2 / 20 = a^2, so the standard deviation is exactly a; the worst return is -a.
def alternating(a: str) -> list[str]:
    return ["0", *[a, f"-{a}"] * 10]


HISTORY: History = {
    BTC: closes(alternating("0.02")),  # sigma 0.02, worst -0.02 (first on Jan 4)
    ETH: closes(alternating("0.05")),  # sigma 0.05, worst -0.05 (first on Jan 4)
    AAPL: [],  # no history: the equity defaults apply
}


def rule(
    kind: LimitType,
    value: str,
    *,
    symbol: str | None = None,
    account_id: uuid.UUID | None = None,
    kill_on_breach: bool = False,
) -> LimitRule:
    return LimitRule(uuid.uuid4(), kind, D(value), symbol, account_id, kill_on_breach)


def run(
    *specs: ScenarioSpec,
    rules: Sequence[LimitRule] = (),
    history: History = HISTORY,
    holdings: Sequence[StressHolding] = HOLDINGS,
) -> list[ScenarioResult]:
    return run_scenarios(STATE, holdings, history, rules, specs)


def one(
    spec: ScenarioSpec,
    *,
    rules: Sequence[LimitRule] = (),
    history: History = HISTORY,
    holdings: Sequence[StressHolding] = HOLDINGS,
) -> ScenarioResult:
    (result,) = run(spec, rules=rules, history=history, holdings=holdings)
    return result


def shocks(result: ScenarioResult) -> dict[str, Decimal]:
    return {p.symbol: p.shock for p in result.positions}


def pnls(result: ScenarioResult) -> dict[str, Decimal]:
    return {p.symbol: p.pnl for p in result.positions}


class TestCryptoCrash:
    def test_crypto_falls_30_percent_and_equities_stay_by_default(self) -> None:
        # BTC 40000 -> 28000: 0.1 x -12000 = -1200; ETH 2000 -> 1400: -600; AAPL 0.
        result = one(ScenarioSpec(ScenarioName.CRYPTO_CRASH))
        assert shocks(result) == {BTC: D("-0.3"), ETH: D("-0.3"), AAPL: 0}
        assert pnls(result) == {BTC: -1200, ETH: -600, AAPL: 0}
        btc = result.positions[0]
        assert (btc.price_after, btc.value_before, btc.value_after) == (D(28000), D(4000), D(2800))
        assert result.pnl == -1800
        assert result.equity_after == 8200
        assert result.pnl_fraction == D("-0.18")  # -1800 / 10000
        assert result.parameters == {"shock": "-0.3", "equity_shock": "0"}
        assert result.description == "every crypto holding -30%, every equity 0%"

    def test_parameters_override_the_defaults(self) -> None:
        # BTC -50%: -2000; ETH -50%: -1000; AAPL -10%: 10 x -20 = -200.
        result = one(
            ScenarioSpec(ScenarioName.CRYPTO_CRASH, shock=D("-0.5"), equity_shock=D("-0.1"))
        )
        assert pnls(result) == {BTC: -2000, ETH: -1000, AAPL: -200}
        assert result.pnl == -3200

    def test_the_account_after_keeps_its_day_start_and_peak(self) -> None:
        after = one(ScenarioSpec(ScenarioName.CRYPTO_CRASH)).state_after
        assert after.equity == 8200
        assert after.exposures == {BTC: 2800, ETH: 1400, AAPL: 2000}
        assert (after.day_start_equity, after.peak_equity) == (D(10000), D(12000))


class TestBreaches:
    def test_reports_the_limits_the_crash_breaches_and_not_the_looser_ones(self) -> None:
        # The crash loses 1800 today: over a 1500 daily loss limit, within 2000. Drawdown
        # from the 12000 peak: 3800 / 12000 = 0.316667, over 0.3; before it was
        # 2000 / 12000 = 0.166667, already over 0.15 but not over 0.3.
        tight = rule(LimitType.DAILY_LOSS, "1500", kill_on_breach=True)
        loose = rule(LimitType.DAILY_LOSS, "2000")
        drawdown = rule(LimitType.MAX_DRAWDOWN, "0.3")
        old = rule(LimitType.MAX_DRAWDOWN, "0.15")
        other_account = rule(LimitType.DAILY_LOSS, "1", account_id=uuid.uuid4())
        result = one(
            ScenarioSpec(ScenarioName.CRYPTO_CRASH),
            rules=[tight, loose, drawdown, old, other_account],
        )
        by_id = {b.limit_id: b for b in result.breaches}
        assert set(by_id) == {tight.id, drawdown.id, old.id}
        daily = by_id[tight.id]
        assert daily.limit_type is LimitType.DAILY_LOSS
        assert (daily.limit_value, daily.measure_after) == (D(1500), D(1800))
        assert daily.utilisation_after == D("1.2")
        assert daily.kill_on_breach
        assert not daily.already_breached
        assert "has reached the limit 1500" in daily.reason
        measured = by_id[drawdown.id].measure_after
        assert measured is not None
        assert measured.quantize(D("0.000001")) == D("0.316667")
        assert not by_id[drawdown.id].already_breached
        assert by_id[old.id].already_breached

    def test_per_symbol_limit_sees_the_shocked_exposure(self) -> None:
        # Collapse of BTC (-90%): its exposure 4000 -> 400, under a 1000 position limit,
        # while ETH stays at 2000, over its 1500 limit (already before).
        btc_limit = rule(LimitType.POSITION_SIZE, "1000", symbol=BTC)
        eth_limit = rule(LimitType.POSITION_SIZE, "1500", symbol=ETH)
        result = one(ScenarioSpec(ScenarioName.SINGLE_ASSET_COLLAPSE), rules=[btc_limit, eth_limit])
        assert [(b.limit_id, b.symbol, b.measure_after) for b in result.breaches] == [
            (eth_limit.id, ETH, D(2000))
        ]
        assert result.breaches[0].already_breached


class TestSingleAssetCollapse:
    def test_the_largest_holding_falls_90_percent_by_default(self) -> None:
        # BTC (4000) is the largest: 40000 -> 4000, 0.1 x -36000 = -3600.
        result = one(ScenarioSpec(ScenarioName.SINGLE_ASSET_COLLAPSE))
        assert shocks(result) == {BTC: D("-0.9"), ETH: 0, AAPL: 0}
        assert result.pnl == -3600
        assert result.parameters == {"shock": "-0.9", "symbol": BTC}

    def test_a_named_symbol_with_its_shock(self) -> None:
        # ETH 2000 -> 1000: -1000.
        result = one(ScenarioSpec(ScenarioName.SINGLE_ASSET_COLLAPSE, symbol=ETH, shock=D("-0.5")))
        assert pnls(result) == {BTC: 0, ETH: -1000, AAPL: 0}

    def test_a_symbol_not_held_has_no_effect_and_says_so(self) -> None:
        result = one(ScenarioSpec(ScenarioName.SINGLE_ASSET_COLLAPSE, symbol="DOGE/USD"))
        assert result.pnl == 0
        assert result.notes == ("DOGE/USD is not held: its collapse has no effect",)

    def test_an_empty_account_has_nothing_to_collapse(self) -> None:
        result = one(ScenarioSpec(ScenarioName.SINGLE_ASSET_COLLAPSE), holdings=())
        assert result.positions == ()
        assert result.pnl == 0
        assert result.notes == ("the account holds nothing: nothing collapses",)


class TestVolatilitySpike:
    def test_each_holding_falls_three_of_its_sigmas_or_its_class_default(self) -> None:
        # BTC sigma 0.02: -0.06 x 4000 = -240. ETH sigma 0.05: -0.15 x 2000 = -300.
        # AAPL has no history: equity default 0.02, -0.06 x 2000 = -120. Total -660.
        result = one(ScenarioSpec(ScenarioName.VOLATILITY_SPIKE))
        assert shocks(result) == {BTC: D("-0.06"), ETH: D("-0.15"), AAPL: D("-0.06")}
        assert pnls(result) == {BTC: -240, ETH: -300, AAPL: -120}
        assert result.pnl == -660
        btc, _, aapl = result.positions
        assert not btc.history_fallback
        assert btc.note == "daily volatility 0.02 over 21 returns"
        assert aapl.history_fallback
        assert aapl.note == (
            "0 daily returns, fewer than 20: the equity default daily volatility 0.02 used"
        )
        assert result.notes == ("too little price history, class defaults used: AAPL",)

    def test_too_short_a_history_uses_the_default(self) -> None:
        # 19 returns are not enough: crypto default 0.04, 2 sigmas: -0.08 x 4000 = -320.
        history = {BTC: closes(["0.01"] * 19)}
        holdings = HOLDINGS[:1]
        spec = ScenarioSpec(ScenarioName.VOLATILITY_SPIKE, sigmas=D(2))
        result = one(spec, history=history, holdings=holdings)
        assert result.positions[0].history_fallback
        assert result.pnl == -320
        assert result.parameters == {"sigmas": "2"}

    def test_a_fall_past_100_percent_floors_the_price_at_zero(self) -> None:
        # ETH without history, 30 sigmas of 0.04: a return of -1.2, the price stops at 0
        # and the position loses its whole 2000, no more.
        spec = ScenarioSpec(ScenarioName.VOLATILITY_SPIKE, sigmas=D(30))
        result = one(spec, history={}, holdings=HOLDINGS[1:2])
        eth = result.positions[0]
        assert eth.shock == D("-1.2")
        assert (eth.price_after, eth.value_after, eth.pnl) == (D(0), D(0), D(-2000))
        assert result.state_after.exposures[ETH] == 0


class TestCorrelationBreakdown:
    def test_every_holding_moves_by_its_own_worst_day_at_once(self) -> None:
        # BTC worst -0.02: -80. ETH worst -0.05: -100. AAPL equity default -0.08: -160.
        result = one(ScenarioSpec(ScenarioName.CORRELATION_BREAKDOWN))
        assert shocks(result) == {BTC: D("-0.02"), ETH: D("-0.05"), AAPL: D("-0.08")}
        assert result.pnl == -340
        # Ten returns tie at -0.02: the earliest is named, the third return, on Jan 4.
        assert result.positions[0].note == "worst daily return -0.02 on 2024-01-04"
        assert result.positions[2].history_fallback


# Returns per day (Jan 2, 3, 4); AAPL has no close on Jan 1, so no return on Jan 2:
#          Jan 2   Jan 3   Jan 4
#   BTC    +0.1    -0.1    -0.1     (100, 110, 99, 89.1)
#   ETH    -0.5    +0.25   -0.05    (100, 50, 62.5, 59.375)
#   AAPL     -     -0.1    +0.1     (100, 90, 99 from Jan 2)
# PnL on today's values (4000, 2000, 2000):
#   Jan 2: not common (it would be 400 - 1000 = -600)
#   Jan 3: -400 + 500 - 200 = -100
#   Jan 4: -400 - 100 + 200 = -300   <- the worst common day
WORST_DAY_HISTORY: History = {
    BTC: closes(["0.1", "-0.1", "-0.1"]),
    ETH: closes(["-0.5", "0.25", "-0.05"]),
    AAPL: [(date(2024, 1, 2), D(100)), (date(2024, 1, 3), D(90)), (date(2024, 1, 4), D(99))],
}


class TestWorstDay:
    def test_replays_the_common_day_with_the_worst_pnl(self) -> None:
        result = one(ScenarioSpec(ScenarioName.WORST_DAY), history=WORST_DAY_HISTORY)
        assert result.replayed_day == date(2024, 1, 4)
        assert shocks(result) == {BTC: D("-0.1"), ETH: D("-0.05"), AAPL: D("0.1")}
        assert pnls(result) == {BTC: -400, ETH: -100, AAPL: 200}
        assert result.pnl == -300
        assert result.parameters == {"day": "2024-01-04"}

    def test_no_common_day_replays_nothing(self) -> None:
        history = {BTC: WORST_DAY_HISTORY[BTC], ETH: WORST_DAY_HISTORY[ETH]}
        result = one(ScenarioSpec(ScenarioName.WORST_DAY), history=history)
        assert result.replayed_day is None
        assert result.pnl == 0
        assert result.notes == (
            "the holdings' histories share no day: nothing replayed "
            "(AAPL without any daily return)",
        )


class TestCustom:
    def test_a_symbols_shock_wins_over_its_class(self) -> None:
        # BTC -0.5 (its own, not crypto's -0.1): -2000. ETH crypto -0.1: -200.
        # AAPL is named by neither: unchanged.
        spec = ScenarioSpec(
            ScenarioName.CUSTOM,
            shocks=(
                CustomShockSpec(D("-0.1"), asset_class=AssetClass.CRYPTO),
                CustomShockSpec(D("-0.5"), symbol=BTC),
            ),
        )
        result = one(spec)
        assert pnls(result) == {BTC: -2000, ETH: -200, AAPL: 0}
        assert result.parameters == {"asset_class:crypto": "-0.1", BTC: "-0.5"}

    def test_a_symbol_not_held_has_no_effect_and_says_so(self) -> None:
        # AAPL +0.1: 10 x 20 = +200; DOGE is not held.
        spec = ScenarioSpec(
            ScenarioName.CUSTOM,
            shocks=(CustomShockSpec(D("0.1"), symbol=AAPL), CustomShockSpec(D(-1), symbol="DOGE")),
        )
        result = one(spec)
        assert result.pnl == 200
        assert result.notes == ("DOGE is not held: its shock has no effect",)

    def test_a_shock_of_minus_one_takes_the_price_to_zero(self) -> None:
        spec = ScenarioSpec(ScenarioName.CUSTOM, shocks=(CustomShockSpec(D(-1), symbol=ETH),))
        eth = one(spec).positions[1]
        assert (eth.price_after, eth.pnl) == (D(0), D(-2000))


class TestRefusals:
    @pytest.mark.parametrize(
        "spec",
        [
            ScenarioSpec(ScenarioName.CUSTOM, shocks=(CustomShockSpec(D("-1.01"), symbol=BTC),)),
            ScenarioSpec(ScenarioName.CRYPTO_CRASH, shock=D(-2)),
            ScenarioSpec(ScenarioName.CRYPTO_CRASH, equity_shock=D("NaN")),
            ScenarioSpec(ScenarioName.SINGLE_ASSET_COLLAPSE, shock=D("-1.5")),
            ScenarioSpec(ScenarioName.VOLATILITY_SPIKE, sigmas=D(0)),
            ScenarioSpec(ScenarioName.WORST_DAY, shock=D("-0.1")),
            ScenarioSpec(ScenarioName.CUSTOM),
            ScenarioSpec(ScenarioName.CUSTOM, shocks=(CustomShockSpec(D("-0.1")),)),
            ScenarioSpec(
                ScenarioName.CUSTOM,
                shocks=(CustomShockSpec(D("-0.1"), symbol=BTC, asset_class=AssetClass.CRYPTO),),
            ),
            ScenarioSpec(
                ScenarioName.CUSTOM,
                shocks=(CustomShockSpec(D("-0.1"), symbol=BTC), CustomShockSpec(D(0), symbol=BTC)),
            ),
        ],
        ids=[
            "custom-below-minus-one",
            "crash-below-minus-one",
            "not-a-number",
            "collapse-below-minus-one",
            "zero-sigmas",
            "parameter-of-another-scenario",
            "custom-without-shocks",
            "custom-without-target",
            "custom-with-two-targets",
            "custom-target-twice",
        ],
    )
    def test_refuses_bad_parameters(self, spec: ScenarioSpec) -> None:
        with pytest.raises(ValidationFailedError) as caught:
            run(ScenarioSpec(ScenarioName.CRYPTO_CRASH), spec)
        assert caught.value.status_code == 422
        assert caught.value.details["scenario"] == spec.name.value

    def test_a_shock_below_minus_one_names_its_field(self) -> None:
        spec = ScenarioSpec(ScenarioName.CRYPTO_CRASH, shock=D("-1.5"))
        with pytest.raises(ValidationFailedError, match="below -1") as caught:
            run(spec)
        assert caught.value.details == {
            "scenario": "crypto_crash",
            "field": "shock",
            "value": "-1.5",
        }


class TestDailyReturns:
    def test_a_repeated_day_counts_once_and_a_zero_close_has_no_return(self) -> None:
        series = [
            (date(2024, 1, 3), D(0)),
            (date(2024, 1, 1), D(100)),
            (date(2024, 1, 2), D(999)),
            (date(2024, 1, 2), D(110)),  # the last close of a day wins
            (date(2024, 1, 4), D(50)),
        ]
        # Jan 2: 110/100 - 1; Jan 3: 0/110 - 1 = -1; Jan 4: none (its earlier close is 0).
        assert daily_returns(series) == [(date(2024, 1, 2), D("0.1")), (date(2024, 1, 3), D(-1))]


class TestRequest:
    def test_runs_every_built_in_scenario_by_default_and_custom_with_shocks(self) -> None:
        assert StressTestRequest().scenario_names() == list(BUILT_IN_SCENARIOS)
        request = StressTestRequest.model_validate({"custom": [{"symbol": BTC, "shock": "-0.2"}]})
        assert request.scenario_names() == [*BUILT_IN_SCENARIOS, ScenarioName.CUSTOM]

    def test_becomes_the_specs_with_its_parameters(self) -> None:
        request = StressTestRequest.model_validate(
            {
                "scenarios": ["single_asset_collapse", "crypto_crash", "custom"],
                "crypto_crash": {"equity_shock": "-0.05"},
                "single_asset_collapse": {"symbol": ETH},
                "custom": [{"asset_class": "equity", "shock": -0.25}],
            }
        )
        assert specs_from_request(request) == [
            ScenarioSpec(ScenarioName.SINGLE_ASSET_COLLAPSE, symbol=ETH),
            ScenarioSpec(ScenarioName.CRYPTO_CRASH, equity_shock=D("-0.05")),
            ScenarioSpec(
                ScenarioName.CUSTOM,
                shocks=(CustomShockSpec(D("-0.25"), asset_class=AssetClass.EQUITY),),
            ),
        ]

    def test_the_documented_defaults_are_the_ones_applied(self) -> None:
        # The request's descriptions (the OpenAPI text) state the defaults in words.
        documented: list[tuple[type[BaseModel], str, Decimal]] = [
            (CryptoCrashParams, "shock", DEFAULT_CRASH_SHOCK),
            (CryptoCrashParams, "equity_shock", DEFAULT_CRASH_EQUITY_SHOCK),
            (SingleAssetCollapseParams, "shock", DEFAULT_COLLAPSE_SHOCK),
            (VolatilitySpikeParams, "sigmas", DEFAULT_SIGMAS),
        ]
        for model, name, default in documented:
            assert f"default {default}." in (model.model_fields[name].description or "")

    @pytest.mark.parametrize(
        "body",
        [
            {"custom": [{"symbol": BTC, "shock": "-1.5"}]},
            {"custom": [{"symbol": BTC, "asset_class": "crypto", "shock": "-0.1"}]},
            {"custom": [{"shock": "-0.1"}]},
            {"scenarios": ["custom"]},
            {"scenarios": ["worst_day"], "custom": [{"symbol": BTC, "shock": "-0.1"}]},
            {"scenarios": ["worst_day"], "volatility_spike": {"sigmas": "2"}},
            {"scenarios": ["worst_day", "worst_day"]},
            {"scenarios": []},
            {"volatility_spike": {"sigmas": "0"}},
            {"crypto_crash": {"shock": "NaN"}},
            {"worst_day": {}},
        ],
    )
    def test_refuses_an_inconsistent_body(self, body: dict[str, object]) -> None:
        with pytest.raises(ValidationError):
            StressTestRequest.model_validate(body)


class TestRead:
    def test_money_travels_as_strings(self) -> None:
        results = run(ScenarioSpec(ScenarioName.CRYPTO_CRASH), ScenarioSpec(ScenarioName.WORST_DAY))
        body = stress_read(STATE, results).model_dump(mode="json")
        assert body["account_id"] == str(ACCOUNT)
        assert body["equity"] == "10000"
        crash, worst = body["results"]
        assert crash["name"] == "crypto_crash"
        assert isinstance(crash["pnl"], str)
        assert D(crash["pnl"]) == -1800
        assert D(crash["positions"][0]["price_after"]) == 28000
        assert crash["replayed_day"] is None
        assert "state_after" not in crash
        # The alternating histories and AAPL's empty one share no day.
        assert worst["replayed_day"] is None
