"""Builds every service from the settings, in dependency order, into one registry.

`Services` is the typed handle routers reach through api/deps.py; the registry
starts, stops and reports on the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Settings
from core.service_registry import ServiceRegistry
from services.agents.service import AgentService
from services.backtests.agents import AgentBacktester
from services.backtests.jobs import BacktestJobs
from services.backtests.service import BacktestService
from services.files.service import CandleImportService
from services.infra.cache import CacheService
from services.infra.database import DatabaseService
from services.infra.event_bus import EventBus, InProcessEventBus, RedisEventBus
from services.infra.redis import RedisService
from services.infra.websocket_hub import WebSocketHub
from services.llm.service import LLMService
from services.market_data.service import MarketDataService
from services.paper_trading.activity import PaperActivity
from services.paper_trading.lifecycle import PaperLifecycle
from services.paper_trading.service import PaperTradingService
from services.portfolio.service import PortfolioService
from services.risk.service import RiskService
from services.sample_data.service import SampleDataService
from services.strategies.live import SignalService
from services.strategies.service import StrategyService
from services.users.service import UserService


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    registry: ServiceRegistry
    database: DatabaseService
    redis: RedisService | None
    event_bus: EventBus
    cache: CacheService
    websocket_hub: WebSocketHub
    users: UserService
    sample_data: SampleDataService
    market_data: MarketDataService
    paper_trading: PaperTradingService
    paper_activity: PaperActivity
    paper_lifecycle: PaperLifecycle
    portfolio: PortfolioService
    llm: LLMService
    agents: AgentService
    risk: RiskService
    backtests: BacktestService
    candle_imports: CandleImportService
    backtest_jobs: BacktestJobs
    strategies: StrategyService
    signals: SignalService
    agent_backtests: AgentBacktester


def build_services(settings: Settings) -> Services:
    """Wire the services; nothing connects until `registry.start()`."""
    registry = ServiceRegistry()

    database = DatabaseService(settings)
    registry.register("database", database)

    redis: RedisService | None = None
    event_bus: EventBus
    if settings.redis.enabled:
        redis = RedisService(
            settings.redis.url,
            namespace=settings.redis.namespace,
            health_interval_seconds=settings.redis.health_interval_seconds,
            socket_timeout_seconds=settings.redis.socket_timeout_seconds,
        )
        # Optional: without Redis the service keeps serving, degraded.
        registry.register("redis", redis, optional=True)
        event_bus = RedisEventBus(redis)
        registry.register("event_bus", event_bus, depends_on=("redis",))
    else:
        event_bus = InProcessEventBus()
        registry.register("event_bus", event_bus)

    cache = CacheService(redis)
    registry.register("cache", cache, depends_on=("redis",) if redis else ())

    websocket_hub = WebSocketHub(
        event_bus,
        queue_size=settings.websocket.queue_size,
        heartbeat_seconds=settings.websocket.heartbeat_seconds,
        heartbeat_timeout_seconds=settings.websocket.heartbeat_timeout_seconds,
    )
    registry.register("websocket_hub", websocket_hub, depends_on=("event_bus",))

    users = UserService(database, settings)
    registry.register("users", users, depends_on=("database",))

    sample_data = SampleDataService(database, users, settings)
    registry.register("sample_data", sample_data, depends_on=("database", "users"))

    market_data = MarketDataService(database, event_bus, cache, settings)
    registry.register(
        "market_data",
        market_data,
        depends_on=("database", "event_bus", "cache", "sample_data"),
    )

    paper_trading = PaperTradingService(database, market_data, event_bus, settings)
    registry.register(
        "paper_trading", paper_trading, depends_on=("database", "market_data", "event_bus")
    )
    # Parts of the paper exchange with no lifecycle of their own (nothing to start, stop
    # or report): on the handle for the routers, not in the registry.
    paper_activity = paper_trading.activity
    paper_lifecycle = PaperLifecycle(database, market_data, paper_trading, event_bus)

    portfolio = PortfolioService(database, market_data, paper_trading, event_bus, settings)
    paper_lifecycle.after_reset.append(portfolio.forget_account)
    registry.register(
        "portfolio",
        portfolio,
        depends_on=("database", "market_data", "paper_trading", "event_bus"),
    )

    llm = LLMService(settings.llm, prices=settings.llm.llm_prices)
    registry.register("llm", llm)

    agents = AgentService(
        database,
        market_data,
        paper_trading,
        portfolio,
        llm,
        event_bus,
        cache,
        settings,
        paper_lifecycle,
    )
    registry.register(
        "agents",
        agents,
        depends_on=("database", "market_data", "paper_trading", "portfolio", "llm", "event_bus"),
    )

    risk = RiskService(
        database,
        market_data,
        paper_trading,
        paper_lifecycle,
        agents,
        event_bus,
        settings.risk,
    )
    paper_lifecycle.after_reset.append(risk.gate.forget_account)
    # After the paper exchange (its check is installed on it) and the agents (a kill
    # switch pauses them).
    registry.register(
        "risk",
        risk,
        depends_on=("database", "market_data", "paper_trading", "agents", "event_bus"),
    )

    candle_imports = CandleImportService(database, settings.market_data)
    registry.register("candle_imports", candle_imports, depends_on=("database",))

    backtests = BacktestService(market_data, imported=candle_imports)
    registry.register("backtests", backtests, depends_on=("market_data", "candle_imports"))

    backtest_jobs = BacktestJobs(database, event_bus)
    registry.register("backtest_jobs", backtest_jobs, depends_on=("database", "event_bus"))

    strategies = StrategyService(database, backtests, market_data, backtest_jobs)
    registry.register(
        "strategies",
        strategies,
        depends_on=("database", "backtests", "market_data", "backtest_jobs"),
    )

    signals = SignalService(database, market_data, event_bus)
    market_data.add_candle_listener(signals.on_closed)
    registry.register("signals", signals, depends_on=("database", "market_data", "event_bus"))

    agent_backtests = AgentBacktester(
        database,
        market_data,
        backtests,
        portfolio,
        llm,
        settings.agents,
        settings.llm,
        backtest_jobs,
    )
    registry.register(
        "agent_backtests",
        agent_backtests,
        depends_on=("database", "market_data", "backtests", "portfolio", "llm", "backtest_jobs"),
    )

    return Services(
        settings=settings,
        registry=registry,
        database=database,
        redis=redis,
        event_bus=event_bus,
        cache=cache,
        websocket_hub=websocket_hub,
        users=users,
        sample_data=sample_data,
        market_data=market_data,
        paper_trading=paper_trading,
        paper_activity=paper_activity,
        paper_lifecycle=paper_lifecycle,
        portfolio=portfolio,
        llm=llm,
        agents=agents,
        risk=risk,
        backtests=backtests,
        candle_imports=candle_imports,
        backtest_jobs=backtest_jobs,
        strategies=strategies,
        signals=signals,
        agent_backtests=agent_backtests,
    )
