"""The sample strategies a database loaded before 0011 run as built-ins.

The seed document's four sample strategies were stored with its own parameter names
(`short_period`, `oversold`, ...), which no built-in type reads: backtesting one was a
422. A row still exactly as loaded (its name, type and parameters untouched) becomes the
built-in the sample catalog now loads (database/seeds/catalog.py): the crossover a
trend_following 20/50, the RSI and Bollinger ones mean_reversion z-scores, the scanner a
24-candle rate of change. A row its owner changed is left as it is.

Downgrading turns rows still as this migration left them back into what they were.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

# name: ((type, parameters) as the seed loaded them, (type, parameters) as built-ins).
SAMPLES: dict[str, tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    "Moving Average Crossover": (
        ("momentum", {"short_period": 20, "long_period": 50}),
        ("trend_following", {"fast_window": 20, "slow_window": 50, "average": "sma"}),
    ),
    "RSI Mean Reversion": (
        ("mean_reversion", {"period": 14, "oversold": 30, "overbought": 70}),
        ("mean_reversion", {"window": 14, "entry_z": 2.0, "exit_z": 0.0}),
    ),
    "Bollinger Bands": (
        ("mean_reversion", {"period": 20, "std_dev": 2}),
        ("mean_reversion", {"window": 20, "entry_z": 2.0, "exit_z": 0.0}),
    ),
    "Momentum Scanner": (
        ("momentum", {"volume_threshold": "1.5", "price_change": 5}),
        ("momentum", {"indicator": "roc", "window": 24, "threshold": 0.05}),
    ),
}

_strategies = sa.table(
    "strategies",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("strategy_type", sa.String()),
    sa.column("parameters", sa.JSON()),
)


def _parameters(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rewrite(*, forward: bool) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            _strategies.c.id,
            _strategies.c.name,
            _strategies.c.strategy_type,
            _strategies.c.parameters,
        ).where(_strategies.c.name.in_(list(SAMPLES)))
    ).all()
    for row in rows:
        before, after = SAMPLES[row.name]
        old, new = (before, after) if forward else (after, before)
        if (row.strategy_type, _parameters(row.parameters)) != old:
            continue
        bind.execute(
            sa.update(_strategies)
            .where(_strategies.c.id == row.id)
            .values(strategy_type=new[0], parameters=new[1])
        )


def upgrade() -> None:
    _rewrite(forward=True)


def downgrade() -> None:
    _rewrite(forward=False)
