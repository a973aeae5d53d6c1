"""One symbol's simulated market: its price walk, spread process and finite book.

Held in whole ticks (prices) and steps (quantities); `build_book` turns them into
`Decimal` levels.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal

from connectors.base import BookLevel
from connectors.simulated.sampling import SECONDS_PER_DAY, SECONDS_PER_YEAR, poisson
from connectors.simulated.window import Rolling24h
from connectors.universe import SymbolSpec

# Spread process: log-bps AR(1) with this stationary deviation and mean-reversion time.
_SPREAD_LOG_SD = 0.35
_SPREAD_REVERSION_SECONDS = 60.0
# Trade sizes: lognormal with mean 1 (mu = -sd^2 / 2) around the symbol's mean size.
_TRADE_SIZE_SD = 0.8
# Book: each side's size is scaled per step by a lognormal factor (mean ~1).
_BOOK_SIZE_SD = 0.2


class Market:
    """One symbol's simulated market, held in whole ticks (prices) and steps (quantities)."""

    __slots__ = (
        "_drift",
        "_jump_probability",
        "_jump_vol",
        "_level_steps",
        "_log_spread",
        "_log_spread_max",
        "_log_spread_mean",
        "_mean_trade_steps",
        "_min_steps",
        "_sigma",
        "_spacing_bps",
        "_spread_max",
        "_spread_min",
        "_spread_noise",
        "_spread_rho",
        "_trades_per_step",
        "ask",
        "asks",
        "bid",
        "bids",
        "last",
        "mid",
        "rng",
        "spec",
        "step",
        "symbol",
        "tick",
        "window",
    )

    def __init__(self, spec: SymbolSpec, rng: random.Random, tick_seconds: float, mid: int) -> None:
        rules = spec.rules
        self.spec = spec
        self.symbol = rules.symbol
        self.tick = rules.tick_size
        self.step = rules.step_size
        self.rng = rng
        self.mid = mid
        self.last = mid
        self.bid = mid
        self.ask = mid + 1
        self.bids: tuple[BookLevel, ...] = ()
        self.asks: tuple[BookLevel, ...] = ()
        self.window = Rolling24h()

        years = tick_seconds / SECONDS_PER_YEAR
        vol, jump_vol = spec.annual_volatility, spec.jump_volatility
        jumps_per_year = spec.jumps_per_day * 365
        self._sigma = vol * math.sqrt(years)
        # Ito correction and jump compensator: the expected price grows at annual_drift.
        self._drift = (
            spec.annual_drift - vol * vol / 2 - jumps_per_year * math.expm1(jump_vol**2 / 2)
        ) * years
        self._jump_probability = -math.expm1(-spec.jumps_per_day * tick_seconds / SECONDS_PER_DAY)
        self._jump_vol = jump_vol

        self._trades_per_step = spec.trades_per_second * tick_seconds
        self._min_steps = max(1, math.ceil(rules.min_quantity / rules.step_size))
        self._mean_trade_steps = float(spec.daily_volume / rules.step_size) / (
            spec.trades_per_second * SECONDS_PER_DAY
        )

        self._log_spread_mean = math.log(float(spec.spread_bps))
        self._log_spread = self._log_spread_mean
        self._log_spread_max = math.log(float(spec.max_spread_bps))
        self._spread_min = float(spec.min_spread_bps)
        self._spread_max = float(spec.max_spread_bps)
        # Exact AR(1) discretisation of an Ornstein-Uhlenbeck process: any tick interval works.
        rho = math.exp(-tick_seconds / _SPREAD_REVERSION_SECONDS)
        self._spread_rho = rho
        self._spread_noise = _SPREAD_LOG_SD * math.sqrt(1 - rho * rho)

        depth = spec.depth
        touch = max(self._min_steps, int(depth.touch_notional / spec.start_price / rules.step_size))
        self._level_steps = tuple(int(touch * depth.growth**i) for i in range(depth.levels))
        self._spacing_bps = float(depth.level_spacing_bps)

    def walk(self) -> tuple[int, int]:
        """One step of the random process; returns (traded volume in steps, trade count)."""
        rng = self.rng
        shock = rng.gauss()
        log_return = self._drift + self._sigma * shock
        jumped = self._jump_probability > 0 and rng.random() < self._jump_probability
        if jumped:
            log_return += rng.gauss(0.0, self._jump_vol)
        self.mid = max(1, round(self.mid * math.exp(log_return)))
        self.quote(widen=jumped)
        trades = poisson(rng, self._trades_per_step)
        volume = 0
        if trades:
            size = rng.lognormvariate(-(_TRADE_SIZE_SD**2) / 2, _TRADE_SIZE_SD)
            volume = max(trades * self._min_steps, round(trades * self._mean_trade_steps * size))
            # Buyers lift the ask more often when the price rose; sellers hit the bid when it fell.
            buy = rng.random() < 0.5 + 0.25 * math.tanh(shock)
            self.last = self.ask if buy else self.bid
        self.build_book()
        return volume, trades

    def replay_to(self, mid: int) -> None:
        """Set the mid to a replayed price, which is also the last trade."""
        self.mid = max(1, mid)
        self.quote(widen=False)
        self.last = self.mid
        self.build_book()

    def quote(self, *, widen: bool) -> None:
        """Advance the spread process and place bid <= mid <= ask around the mid."""
        if widen:
            self._log_spread = self._log_spread_max
        else:
            mean = self._log_spread_mean
            self._log_spread = (
                mean
                + self._spread_rho * (self._log_spread - mean)
                + self._spread_noise * self.rng.gauss()
            )
        bps = min(max(math.exp(self._log_spread), self._spread_min), self._spread_max)
        spread = max(1, math.ceil(bps * self.mid / 10_000))
        self.bid = max(1, self.mid - spread // 2)
        self.ask = self.bid + spread

    def build_book(self) -> None:
        """`depth.levels` a side from the touch outwards, thicker away from it."""
        rng = self.rng
        tick, step, min_steps = self.tick, self.step, self._min_steps
        spacing = max(1, round(self._spacing_bps * self.mid / 10_000))
        mu = -(_BOOK_SIZE_SD**2) / 2
        # One size factor per side keeps quantities monotone in the distance from the touch.
        bid_factor = rng.lognormvariate(mu, _BOOK_SIZE_SD)
        ask_factor = rng.lognormvariate(mu, _BOOK_SIZE_SD)
        bid, ask = self.bid, self.ask
        self.bids = tuple(
            BookLevel(
                Decimal(bid - i * spacing) * tick,
                Decimal(max(min_steps, int(steps * bid_factor))) * step,
            )
            for i, steps in enumerate(self._level_steps)
            if bid - i * spacing >= 1
        )
        self.asks = tuple(
            BookLevel(
                Decimal(ask + i * spacing) * tick,
                Decimal(max(min_steps, int(steps * ask_factor))) * step,
            )
            for i, steps in enumerate(self._level_steps)
        )
