"""Strategy types: the built-in `trend_following` and `breakout` join the seed's vocabulary.

- `strategies.strategy_type` admits `trend_following` (moving-average crossover) and
  `breakout` (Donchian channels), the two built-in kinds the seed's list lacked
  (models/strategy_params.py). The older values stay, so existing rows remain valid.

Downgrading maps both to `momentum`, the older vocabulary's nearest type (the seed
filed its moving-average crossover under it); their parameters are kept as they are,
so such a row no longer parses as a momentum strategy.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_TYPES_BEFORE = "'momentum', 'mean_reversion', 'arbitrage', 'ml_prediction', 'custom'"
_TYPES_AFTER = (
    "'trend_following', 'mean_reversion', 'momentum', 'breakout', 'arbitrage', "
    "'ml_prediction', 'custom'"
)


def _check(types: str) -> None:
    with op.batch_alter_table("strategies") as batch:
        batch.drop_constraint(op.f("ck_strategies_strategy_type"), type_="check")
        batch.create_check_constraint("strategy_type", f"strategy_type IN ({types})")


def upgrade() -> None:
    _check(_TYPES_AFTER)


def downgrade() -> None:
    op.execute(
        "UPDATE strategies SET strategy_type = 'momentum' "
        "WHERE strategy_type IN ('trend_following', 'breakout')"
    )
    _check(_TYPES_BEFORE)
