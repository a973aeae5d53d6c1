"""What a fill costs: the fee rate of one account on one pair, in basis points.

The rate, first that applies:
1. the account's own rate (`trading_accounts.maker_fee_bps` / `taker_fee_bps`), when its
   user set one: an explicit override, e.g. to model a fee tier;
2. the pair's schedule (`trading_pairs.maker_fee_bps` / `taker_fee_bps`, carried on
   `PairRules`): 10/20 bps on the simulated crypto pairs, 0 on equities;
3. `PAPER_MAKER_FEE_BPS` / `PAPER_TAKER_FEE_BPS`, for a pair whose venue states none.

Maker and taker are resolved apart: an account may override one and not the other.
Every path that charges or reserves a fee asks here (placing, resting fills, triggered
stops, the buy reserve, the rebalance planner, the agents' cost estimates), so what an
order reserves is what its fills can cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from connectors.base import PairRules


class _FeeOverrides(Protocol):
    @property
    def maker_fee_bps(self) -> Decimal | None: ...
    @property
    def taker_fee_bps(self) -> Decimal | None: ...


@dataclass(frozen=True, slots=True)
class FeeRates:
    maker_bps: Decimal
    taker_bps: Decimal

    @property
    def highest_bps(self) -> Decimal:
        """The rate a reserve must assume when it cannot know how the order will trade."""
        return max(self.maker_bps, self.taker_bps)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The paper exchange's defaults for pairs without a schedule of their own."""

    default_maker_bps: Decimal
    default_taker_bps: Decimal

    def for_pair(self, rules: PairRules) -> FeeRates:
        """The pair's schedule, or the defaults where it states none (no override)."""
        return FeeRates(
            rules.maker_fee_bps if rules.maker_fee_bps is not None else self.default_maker_bps,
            rules.taker_fee_bps if rules.taker_fee_bps is not None else self.default_taker_bps,
        )

    def rates(self, account: _FeeOverrides, rules: PairRules) -> FeeRates:
        """The account's override where it has one, the pair's otherwise."""
        pair = self.for_pair(rules)
        maker, taker = account.maker_fee_bps, account.taker_fee_bps
        return FeeRates(
            maker if maker is not None else pair.maker_bps,
            taker if taker is not None else pair.taker_bps,
        )
