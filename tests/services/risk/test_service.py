"""RiskService on the real services: limits' CRUD rules and the stress test's inputs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.exceptions import ConflictError, NotFoundError
from models.risk import LimitUpdate
from models.stress import StressTestRequest
from services.container import Services
from tests.services.risk.conftest import SYMBOL, add_limit, at_mark, new_account, order

D = Decimal


async def test_a_stress_test_names_symbols_as_orders_do(services: Services) -> None:
    account = await new_account(services)
    await at_mark(services)
    await services.paper_trading.place_order(account.user_id, order("buy", "0.1"))
    read = await services.risk.stress_test(
        account.user_id,
        StressTestRequest.model_validate(
            {
                "scenarios": ["single_asset_collapse", "custom"],
                "single_asset_collapse": {"symbol": "btc-usd", "shock": "-0.5"},
                "custom": [{"symbol": "BTC-USD", "shock": "-0.1"}],
            }
        ),
    )
    collapse, custom = read.results
    assert collapse.positions[0].symbol == SYMBOL
    assert collapse.pnl < 0
    assert custom.pnl < 0
    assert custom.pnl > collapse.pnl
    with pytest.raises(NotFoundError):
        await services.risk.stress_test(
            account.user_id,
            StressTestRequest.model_validate(
                {"scenarios": ["custom"], "custom": [{"symbol": "NOPE/USD", "shock": "-0.1"}]}
            ),
        )


async def test_one_active_limit_per_type_and_scope(services: Services) -> None:
    account = await new_account(services)
    first = await add_limit(services, account.user_id, limit_type="leverage", limit_value="2")
    with pytest.raises(ConflictError):
        await add_limit(services, account.user_id, limit_type="leverage", limit_value="3")
    # Another scope is another limit; an inactive one may wait beside the active one.
    await add_limit(
        services,
        account.user_id,
        limit_type="leverage",
        limit_value="1",
        account_id=str(account.id),
    )
    spare = await add_limit(
        services, account.user_id, limit_type="leverage", limit_value="3", is_active=False
    )
    with pytest.raises(ConflictError):
        await services.risk.update_limit(account.user_id, spare.id, LimitUpdate(is_active=True))
    changed = await services.risk.update_limit(
        account.user_id, first.id, LimitUpdate.model_validate({"is_active": False})
    )
    assert not changed.is_active
    assert changed.limit_value == D(2)  # a PATCH without a value keeps it
    await services.risk.update_limit(account.user_id, spare.id, LimitUpdate(is_active=True))
    await services.risk.delete_limit(account.user_id, first.id)
    with pytest.raises(NotFoundError):
        await services.risk.get_limit(account.user_id, first.id)
    other = await new_account(services)
    with pytest.raises(NotFoundError):
        await services.risk.get_limit(other.user_id, spare.id)
