"""The domain's closed vocabularies, shared by the API models, the ORM and the services.

The database keeps each as a CHECK list (database/orm/constraints.py builds it from
the enum), so a value added here reaches the schema through a migration.
"""

from enum import StrEnum


class UserRole(StrEnum):
    ADMIN = "admin"
    USER = "user"


class AgentStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    PAUSED = "paused"
    ERROR = "error"


class LLMProvider(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OPENROUTER = "openrouter"
    # Any server speaking the OpenAI API (Ollama, vLLM), reached at a configured base URL.
    OPENAI_COMPATIBLE = "openai_compatible"


class DecisionType(StrEnum):
    TRADE = "trade"
    HOLD = "hold"
    REBALANCE = "rebalance"
    ANALYSIS = "analysis"
    RISK_CHECK = "risk_check"
    # Cancels open orders the agent placed (`Decision.order_ids`).
    CANCEL = "cancel"


class DecisionStatus(StrEnum):
    # Logged before its order goes out, so the order can point at it; a decision still
    # pending after a restart was interrupted and is closed as an error.
    PENDING = "pending"
    EXECUTED = "executed"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    ERROR = "error"


class DecisionTrigger(StrEnum):
    """What started a decision cycle."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"  # execute-decision without a body: one cycle now
    OVERRIDE = "override"  # execute-decision with a decision in the body
    COORDINATION = "coordination"


class ActionTaken(StrEnum):
    """What a decision did on the account."""

    BUY = "buy"
    SELL = "sell"
    REBALANCE = "rebalance"
    CANCEL = "cancel"
    NONE = "none"


class FileProcessingStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"


class StrategyType(StrEnum):
    # The five built-in kinds (models/strategy_params.py) first; ml_prediction and
    # custom stay so that rows of the seed's vocabulary remain valid.
    TREND_FOLLOWING = "trend_following"
    MEAN_REVERSION = "mean_reversion"
    MOMENTUM = "momentum"
    BREAKOUT = "breakout"
    ARBITRAGE = "arbitrage"
    ML_PREDICTION = "ml_prediction"
    CUSTOM = "custom"


class SignalAction(StrEnum):
    """A strategy's reading of a closed candle: enter (buy), leave (sell) or keep."""

    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


class BacktestKind(StrEnum):
    STRATEGY = "strategy"
    AGENT = "agent"


class BacktestStatus(StrEnum):
    """A run's life: queued and running are live; the other three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class AccountType(StrEnum):
    PAPER = "paper"
    TESTNET = "testnet"
    MAINNET = "mainnet"


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till cancelled
    IOC = "IOC"  # immediate or cancel
    FOK = "FOK"  # fill or kill
    DAY = "DAY"  # until the end of the UTC day it was placed in
    GTD = "GTD"  # good till `expires_at`


class StopTrigger(StrEnum):
    """Which price triggers a stop: a buy stop when it is >= the stop, a sell when <=."""

    LAST = "last"
    BID = "bid"
    ASK = "ask"


class OrderStatus(StrEnum):
    PENDING = "pending"
    PARTIAL = "partial"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class AssetClass(StrEnum):
    CRYPTO = "crypto"
    EQUITY = "equity"


class Timeframe(StrEnum):
    M1 = "1m"
    M5 = "5m"
    H1 = "1h"
    D1 = "1d"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"
