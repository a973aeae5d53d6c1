"""What a fresh install starts with: the seed document's four strategies and its
'Alpha Trader', three more sample agents (one per model provider), and the pairs of
the simulated exchange."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

SIMULATED_EXCHANGE = "simulated"
PRIMARY_ACCOUNT_NAME = "Primary Account"


_SAMPLE_SYMBOLS = ("BTC/USD", "ETH/USD")


@dataclass(frozen=True)
class SeedStrategy:
    name: str
    description: str
    strategy_type: str
    risk_level: str
    parameters: dict[str, Any]
    symbols: tuple[str, ...] = _SAMPLE_SYMBOLS
    timeframe: str = "1h"


@dataclass(frozen=True)
class SeedPair:
    base_asset: str
    asset_class: str
    tick_size: Decimal
    step_size: Decimal
    max_quantity: Decimal
    quote_asset: str = "USD"
    min_notional: Decimal = Decimal(1)
    maker_fee_bps: Decimal = Decimal(0)
    taker_fee_bps: Decimal = Decimal(0)

    @property
    def symbol(self) -> str:
        return f"{self.base_asset}/{self.quote_asset}"

    @property
    def min_quantity(self) -> Decimal:
        return self.step_size


@dataclass(frozen=True)
class SeedAgent:
    name: str
    agent_type: str
    llm_provider: str
    llm_model: str
    paper_balance: Decimal
    risk_tolerance: Decimal
    max_position_pct: Decimal
    decision_interval_seconds: int
    daily_cost_budget: Decimal
    strategies: tuple[str, ...]
    symbols: tuple[str, ...]
    personality: dict[str, Any] = field(default_factory=dict)


# The seed document's four, as the built-in types run them (models/strategy_params.py,
# normalized: every parameter written out), watching the sample agents' two main pairs
# on hourly candles, so a fresh install has live signals and its agents see them.
STRATEGIES = (
    SeedStrategy(
        name="Moving Average Crossover",
        description="Long while the 20-candle average is above the 50-candle one, flat "
        "when it crosses below",
        strategy_type="trend_following",
        risk_level="medium",
        parameters={"fast_window": 20, "slow_window": 50, "average": "sma"},
    ),
    SeedStrategy(
        name="RSI Mean Reversion",
        description="Buy a close two standard deviations below its 14-candle mean, sell "
        "back at the mean",
        strategy_type="mean_reversion",
        risk_level="low",
        parameters={"window": 14, "entry_z": 2.0, "exit_z": 0.0},
    ),
    SeedStrategy(
        name="Bollinger Bands",
        description="Buy a close below the lower Bollinger band (20 candles, 2 standard "
        "deviations), sell at the middle band",
        strategy_type="mean_reversion",
        risk_level="medium",
        parameters={"window": 20, "entry_z": 2.0, "exit_z": 0.0},
    ),
    SeedStrategy(
        name="Momentum Scanner",
        description="Long while the close is more than 5% above the close 24 candles back",
        strategy_type="momentum",
        risk_level="high",
        parameters={"indicator": "roc", "window": 24, "threshold": 0.05},
    ),
)


def _crypto(base: str, tick: str, step: str, max_quantity: int) -> SeedPair:
    # Venue-like increments, a 10 USD minimum and a typical spot maker/taker schedule.
    return SeedPair(
        base,
        "crypto",
        Decimal(tick),
        Decimal(step),
        Decimal(max_quantity),
        min_notional=Decimal(10),
        maker_fee_bps=Decimal(10),
        taker_fee_bps=Decimal(20),
    )


def _equity(base: str) -> SeedPair:
    # Fractional shares and no commission, as at US retail brokers.
    return SeedPair(base, "equity", Decimal("0.01"), Decimal("0.0001"), Decimal(1_000_000))


# The simulated exchange's universe (connectors/universe.py); a test keeps them in step.
TRADING_PAIRS = (
    _crypto("BTC", "0.01", "0.00001", 1_000),
    _crypto("ETH", "0.01", "0.0001", 10_000),
    _crypto("SOL", "0.01", "0.001", 100_000),
    _crypto("XRP", "0.0001", "0.1", 10_000_000),
    _crypto("DOGE", "0.00001", "1", 50_000_000),
    _crypto("ADA", "0.0001", "0.1", 10_000_000),
    _crypto("AVAX", "0.01", "0.01", 1_000_000),
    _crypto("LINK", "0.001", "0.01", 1_000_000),
    _equity("AAPL"),
    _equity("MSFT"),
    _equity("NVDA"),
    _equity("SPY"),
)


AGENTS = (
    # The seed document's agent; its personality's risk_tolerance moved to the column.
    SeedAgent(
        name="Alpha Trader",
        agent_type="momentum_trader",
        llm_provider="openai",
        llm_model="gpt-4o-mini",
        paper_balance=Decimal("100.00"),
        risk_tolerance=Decimal("0.6"),
        max_position_pct=Decimal(10),
        decision_interval_seconds=300,
        daily_cost_budget=Decimal("1.00"),
        strategies=("Moving Average Crossover", "Momentum Scanner"),
        symbols=("BTC/USD", "ETH/USD", "SOL/USD"),
        personality={"aggression": "0.7", "patience": "0.4", "analysis_depth": "high"},
    ),
    # Runs on the built-in rule-based provider: activates with no API key and costs nothing.
    SeedAgent(
        name="Steady Eddie",
        agent_type="mean_reversion_trader",
        llm_provider="local",
        llm_model="rule-based",
        paper_balance=Decimal("10000.00"),
        risk_tolerance=Decimal("0.3"),
        max_position_pct=Decimal(5),
        decision_interval_seconds=60,
        daily_cost_budget=Decimal(0),
        strategies=("RSI Mean Reversion", "Bollinger Bands"),
        symbols=("BTC/USD", "ETH/USD", "SPY/USD", "AAPL/USD"),
        personality={
            "aggression": "0.2",
            "patience": "0.9",
            "analysis_depth": "medium",
            "style": "buys oversold dips in small size and sells into strength",
        },
    ),
    SeedAgent(
        name="Claude Contrarian",
        agent_type="contrarian_trader",
        llm_provider="anthropic",
        llm_model="claude-3-5-haiku-latest",
        paper_balance=Decimal("5000.00"),
        risk_tolerance=Decimal("0.5"),
        max_position_pct=Decimal(10),
        decision_interval_seconds=900,
        daily_cost_budget=Decimal("2.00"),
        strategies=("Bollinger Bands", "RSI Mean Reversion"),
        symbols=("ETH/USD", "SOL/USD", "LINK/USD", "AVAX/USD", "MSFT/USD"),
        personality={
            "aggression": "0.5",
            "patience": "0.7",
            "analysis_depth": "high",
            "style": "fades crowded moves and waits for confirmation before acting",
        },
    ),
    SeedAgent(
        name="Router Scout",
        agent_type="breakout_scout",
        llm_provider="openrouter",
        llm_model="meta-llama/llama-3.1-70b-instruct",
        paper_balance=Decimal("1000.00"),
        risk_tolerance=Decimal("0.8"),
        max_position_pct=Decimal(20),
        decision_interval_seconds=120,
        daily_cost_budget=Decimal("1.00"),
        strategies=("Momentum Scanner",),
        symbols=("SOL/USD", "DOGE/USD", "XRP/USD", "ADA/USD", "NVDA/USD"),
        personality={
            "aggression": "0.85",
            "patience": "0.2",
            "analysis_depth": "low",
            "style": "chases volume breakouts and cuts losers fast",
        },
    ),
)
