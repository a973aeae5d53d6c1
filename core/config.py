"""Settings: the only place that reads the environment.

Every setting comes from the process environment or a `.env` file in the working
directory, is typed and validated at start, and is documented in `.env.example`.
Groups (`database`, `redis`, `llm`, `market_data`, ...) are separate settings classes
with their own prefix, so the variables stay flat (`DATABASE_URL`, `REDIS_URL`)
while the code reads `settings.database.url`.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.exceptions import ConfigError

ENV_FILE = ".env"


def _config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class MarketDataSource(StrEnum):
    SIMULATED = "simulated"
    BINANCE = "binance"
    COINBASE = "coinbase"
    HYPERLIQUID = "hyperliquid"


class DatabaseSettings(BaseSettings):
    model_config = _config("DATABASE_")

    url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means a SQLite file in DATA_DIR.",
    )
    # Connections kept open: size it to the requests served at once, so a burst does
    # not open and close overflow connections (each a PostgreSQL backend start).
    pool_size: int = Field(default=10, ge=1, le=200)
    max_overflow: int = Field(default=20, ge=0, le=500)
    # Test each pooled connection with a round trip before use. Off: a connection the
    # server dropped (a restart) fails the one request that draws it, with a 503.
    pool_pre_ping: bool = False
    # Seconds after which a pooled connection is replaced (-1: never).
    pool_recycle: int = Field(default=1800, ge=-1)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value:
            return value
        # Accept the URLs people paste from their provider and pick the async driver.
        if value.startswith(("postgres://", "postgresql://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return value


class RedisSettings(BaseSettings):
    model_config = _config("REDIS_")

    url: str = Field(default="", description="redis://host:port/db; empty means in-process.")
    namespace: str = Field(
        default="cival", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Prefix of keys/channels."
    )
    health_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    socket_timeout_seconds: float = Field(default=1.0, gt=0, le=30)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class LLMSettings(BaseSettings):
    """Each provider has its own key and base URL; none is shared between two of them."""

    model_config = _config()

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = Field(
        default=None,
        description="The `openai` provider only: a proxy or gateway in front of OpenAI; "
        "empty means https://api.openai.com/v1.",
    )
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = Field(
        default="https://api.anthropic.com",
        description="The `anthropic` provider: a proxy or gateway in front of Anthropic.",
    )
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openai_compatible_base_url: str | None = Field(
        default=None,
        description="The `openai_compatible` provider: the server's /v1 URL (Ollama, vLLM, "
        "LM Studio); empty means the provider is not configured.",
    )
    openai_compatible_api_key: SecretStr | None = Field(
        default=None,
        description="The `openai_compatible` server's key, if it checks one; never OPENAI_API_KEY.",
    )
    llm_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    llm_prices: dict[str, dict[Literal["input", "output", "cached_input"], Decimal]] = Field(
        default_factory=dict,
        description="USD per million tokens by model, over the built-in table, as JSON: "
        '{"my-model": {"input": "0.15", "output": "0.60", "cached_input": "0.075"}}; '
        "cached_input (cache reads) is optional and defaults to the input price.",
    )
    llm_reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = Field(
        default=None,
        description="reasoning_effort sent to OpenAI reasoning models (o1, o3, o4, gpt-5*); "
        "empty means the model's default. Not every model takes every value.",
    )
    llm_max_completion_tokens: int | None = Field(
        default=None,
        ge=256,
        le=128_000,
        description="Output token cap of one model answer (reasoning included) for every "
        "chat provider; empty means 2048, or 25000 for OpenAI reasoning models.",
    )

    @field_validator("llm_reasoning_effort", "llm_max_completion_tokens", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return value or None
        return value

    @field_validator("llm_prices")
    @classmethod
    def _prices_complete(
        cls, value: dict[str, dict[str, Decimal]]
    ) -> dict[str, dict[str, Decimal]]:
        for model, price in value.items():
            missing = [key for key in ("input", "output") if key not in price]
            if missing:
                raise ValueError(f"{model}: missing {' and '.join(missing)}")
            if any(rate < 0 for rate in price.values()):
                raise ValueError(f"{model}: a price cannot be negative")
        return value

    @field_validator(
        "openai_base_url",
        "anthropic_base_url",
        "openrouter_base_url",
        "openai_compatible_base_url",
        mode="before",
    )
    @classmethod
    def _blank_url_is_the_default(cls, value: Any, info: ValidationInfo) -> Any:
        # `OPENAI_BASE_URL=` as .env.example writes it means "not set", not "".
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[str(info.field_name)].default
        return value.strip() if isinstance(value, str) else value

    @field_validator(
        "openai_base_url", "anthropic_base_url", "openrouter_base_url", "openai_compatible_base_url"
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value


class MarketDataSettings(BaseSettings):
    model_config = _config()

    market_data_source: MarketDataSource = MarketDataSource.SIMULATED
    alpha_vantage_api_key: SecretStr | None = None
    simulation_seed: int | None = Field(
        default=None,
        description="Seed of the simulated market; unset, a fresh one per run (see /health).",
    )
    simulation_tick_seconds: float = Field(default=1.0, gt=0, le=60)
    simulation_speed: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Market seconds per wall-clock second while streaming: above 1 the "
        "simulated clock runs ahead of the real one (demos, tests of candle closes).",
    )
    market_data_stream: bool = Field(
        default=True, description="Run the tick loop; off, the market moves only when stepped."
    )
    market_data_flush_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="Market time between writes of tickers/candles."
    )
    market_data_snapshot_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="Market time between book snapshots of a symbol."
    )
    market_data_import_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        le=16 * 1024**3,
        description="Largest candle CSV upload in bytes; a larger body is refused with 413.",
    )

    @field_validator("simulation_seed", mode="before")
    @classmethod
    def _empty_seed_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class PaperTradingSettings(BaseSettings):
    """The paper exchange: what a new account starts with and what it pays."""

    model_config = _config("PAPER_")

    initial_balance: Decimal = Field(default=Decimal(100000), gt=0, allow_inf_nan=False)
    base_currency: str = Field(default="USD", pattern=r"^[A-Z]{2,10}$")
    # What a fill costs on a pair whose venue states no fee schedule
    # (services/paper_trading/fees.py).
    maker_fee_bps: Decimal = Field(default=Decimal(10), ge=0, le=1000, allow_inf_nan=False)
    taker_fee_bps: Decimal = Field(default=Decimal(20), ge=0, le=1000, allow_inf_nan=False)
    snapshot_interval_seconds: float = Field(default=60.0, gt=0, le=86400)
    # What the venue refills, per market step, of the depth paper orders took
    # (docs/paper-exchange.md): 1 shows the fresh book every step.
    book_recovery: Decimal = Field(default=Decimal("0.5"), gt=0, le=1, allow_inf_nan=False)
    # Simulated time between an order's arrival and its match: it fills against the
    # book as it stands that long after it arrived (0: at once).
    order_latency_ms: int = Field(default=0, ge=0, le=10_000)


class AgentSettings(BaseSettings):
    """The agents' decision loop and the limits every agent trades within."""

    model_config = _config("AGENT_")

    scheduler_enabled: bool = Field(
        default=True, description="Run active agents on their interval; off, cycles run on request."
    )
    scheduler_tick_seconds: float = Field(default=1.0, gt=0, le=60)
    candle_timeframe: Literal["1m", "5m", "1h", "1d"] = "5m"
    candle_limit: int = Field(default=100, ge=10, le=1000)
    context_ttl_seconds: float = Field(
        default=2.0, ge=0, le=300, description="Agents deciding within this share market context."
    )
    recent_decisions: int = Field(default=5, ge=0, le=50)
    max_open_positions: int | None = Field(default=10, ge=1, le=1000)
    max_daily_loss_pct: Decimal | None = Field(
        default=Decimal(5), gt=0, le=100, allow_inf_nan=False
    )
    calibration_horizon_seconds: float = Field(
        default=3600.0,
        gt=0,
        le=30 * 86400,
        description="How long after a trade its outcome is read.",
    )
    max_invalid_answers: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Consecutive invalid answers of an agent's model that put it in error.",
    )
    cycle_deadline_seconds: float = Field(
        default=120.0,
        ge=1,
        le=3600,
        description="Most one decision cycle may take; past it the cycle is an error "
        "decision. Must exceed twice LLM_TIMEOUT_SECONDS (an answer and its repair).",
    )
    backtest_max_cost_usd: Decimal = Field(
        default=Decimal(5),
        ge=0,
        le=100_000,
        allow_inf_nan=False,
        description="An agent backtest whose estimated model cost exceeds this is refused.",
    )
    backtest_max_decisions: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="Most decisions one agent backtest may make.",
    )

    @property
    def cycle_lock_seconds(self) -> float:
        """TTL of an agent's cross-instance cycle lock: the deadline with a margin, so
        the lock never expires under a cycle still running."""
        return self.cycle_deadline_seconds + max(30.0, self.cycle_deadline_seconds / 4)


class RiskSettings(BaseSettings):
    """The risk monitor, the metrics it stores and when it alerts (docs/risk.md)."""

    model_config = _config("RISK_")

    monitor_enabled: bool = Field(
        default=True, description="Run the risk monitor: limits, alerts, stored metrics."
    )
    monitor_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="How often every account with limits is re-evaluated.",
    )
    after_fill_delay_seconds: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="After a fill the account is re-evaluated this much later "
        "(the fills in between count once).",
    )
    metrics_interval_seconds: float = Field(
        default=900.0,
        gt=0,
        le=86400,
        description="How often each active account's metrics are stored.",
    )
    history_days: int = Field(
        default=365, ge=30, le=3650, description="Daily closes the metrics and stress tests read."
    )
    benchmark_symbol: str = Field(
        default="BTC-USD", min_length=1, max_length=50, description="Beta is measured against it."
    )
    approach_pct: Decimal = Field(
        default=Decimal(80),
        gt=0,
        lt=100,
        allow_inf_nan=False,
        description="A limit used this much (percent) raises a limit_approached alert.",
    )
    var_alert_pct: Decimal = Field(
        default=Decimal(10),
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="One-day 99% VaR above this percent of equity raises a var_breach alert.",
    )
    concentration_alert_pct: Decimal = Field(
        default=Decimal(50),
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="A position above this percent of equity raises a position_risk alert.",
    )
    kill_switch_flatten: bool = Field(
        default=False,
        description="A kill switch engaged by a kill_on_breach limit also sells every position.",
    )


class WebSocketSettings(BaseSettings):
    model_config = _config("WS_")

    queue_size: int = Field(default=1000, ge=1, le=100_000)
    heartbeat_seconds: float = Field(default=20.0, gt=0, le=600)
    heartbeat_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = _config()

    environment: Environment = Environment.LOCAL
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "console"
    api_prefix: str = "/api/v1"
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"]
    )
    auth_enabled: bool = False
    secret_key: SecretStr | None = None
    rate_limit_default: str = "300/minute"
    run_migrations: bool = True
    load_seed_data: bool = True
    solo_user_email: str = "solo@localhost"

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    market_data: MarketDataSettings = Field(default_factory=MarketDataSettings)
    websocket: WebSocketSettings = Field(default_factory=WebSocketSettings)
    paper: PaperTradingSettings = Field(default_factory=PaperTradingSettings)
    agents: AgentSettings = Field(default_factory=AgentSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("api_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/"):
            raise ValueError("must start with '/' and not end with '/'")
        return value

    @field_validator("rate_limit_default")
    @classmethod
    def _rate_limit_shape(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as e:
            raise ValueError(f"not a rate limit such as '300/minute': {e}") from e
        return value

    @model_validator(mode="after")
    def _refuse_local_defaults_in_production(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.auth_enabled and self.secret_key is None:
                raise ValueError("SECRET_KEY is required when AUTH_ENABLED in production")
            if not self.database.url:
                raise ValueError("DATABASE_URL is required in production")
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'cival.db'}"

    def resolved_secret_key(self) -> SecretStr:
        """The configured secret, or one generated once and kept in the data dir (solo mode)."""
        if self.secret_key is not None:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return SecretStr(path.read_text(encoding="utf-8").strip())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key, encoding="utf-8")
        path.chmod(0o600)
        return SecretStr(key)


# Which variable each group's field reads, for error messages.
_GROUP_PREFIX = {
    "database": "DATABASE_",
    "redis": "REDIS_",
    "llm": "",
    "market_data": "",
    "websocket": "WS_",
    "paper": "PAPER_",
    "agents": "AGENT_",
}


def _variable_name(loc: tuple[int | str, ...], group_prefix: str) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if parts and parts[0] in _GROUP_PREFIX:
        return (_GROUP_PREFIX[parts[0]] + "_".join(parts[1:])).upper()
    return (group_prefix + "_".join(parts)).upper()


def _one_line(error: ValidationError, group_prefix: str = "") -> str:
    first = error.errors()[0]
    reason = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return f"invalid settings: {reason}"
    return f"invalid setting {_variable_name(first['loc'], group_prefix)}: {reason}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; a bad value raises ConfigError naming the variable."""
    groups: dict[str, type[BaseSettings]] = {
        "database": DatabaseSettings,
        "redis": RedisSettings,
        "llm": LLMSettings,
        "market_data": MarketDataSettings,
        "websocket": WebSocketSettings,
        "paper": PaperTradingSettings,
        "agents": AgentSettings,
    }
    built: dict[str, Any] = {}
    for name, cls in groups.items():
        if name in overrides:
            continue
        try:
            built[name] = cls()
        except ValidationError as e:
            raise ConfigError(_one_line(e, _GROUP_PREFIX[name])) from e
    try:
        return Settings(**built, **overrides)
    except ValidationError as e:
        raise ConfigError(_one_line(e)) from e
