"""The user prompt: what a model is told about the market, the portfolio and the limits."""

from __future__ import annotations

import json
from typing import Any

from models.agents import Personality
from models.decisions import AgentContext
from services.llm.prompts import MAX_CANDLES_IN_PROMPT, AnswerStyle, system_prompt, user_prompt
from tests.services.llm.support import make_context, symbol_context


def payload(context: AgentContext) -> dict[str, Any]:
    text = user_prompt(context)
    data: dict[str, Any] = json.loads(text.split("\n")[1])
    return data


class TestUserPrompt:
    def test_candles_are_the_latest_as_compact_rows(self) -> None:
        closes = [100 + i for i in range(MAX_CANDLES_IN_PROMPT + 10)]
        data = payload(make_context(closes))

        (symbol,) = data["symbols"]
        assert symbol["symbol"] == "BTC-USD"
        columns = ["open_time", "open", "high", "low", "close", "volume"]
        assert symbol["candles"]["columns"] == columns
        rows = symbol["candles"]["rows"]
        assert len(rows) == MAX_CANDLES_IN_PROMPT
        assert [row[4] for row in rows] == [str(c) for c in closes[-MAX_CANDLES_IN_PROMPT:]]
        assert symbol["ticker"]["last"] == str(closes[-1])
        assert "agent_id" not in data
        assert data["portfolio"]["cash"] == "10000"

    def test_agents_sharing_a_symbol_context_are_told_the_same_market(self) -> None:
        shared = symbol_context("ETH-USD", [50, 51, 52])
        one = payload(make_context(symbols=[shared], cash="100"))
        two = payload(make_context(symbols=[shared], cash="200"))

        assert one["symbols"] == two["symbols"]
        assert (one["portfolio"]["cash"], two["portfolio"]["cash"]) == ("100", "200")

    def test_a_new_read_of_the_market_is_told_as_it_is(self) -> None:
        # Built-once parts are per context read: a later read with other prices never
        # gets an earlier one's, even for the same symbol.
        for price in range(60, 200, 7):
            data = payload(make_context(symbols=[symbol_context("ETH-USD", [price])]))
            assert data["symbols"][0]["ticker"]["last"] == str(price)
            assert data["symbols"][0]["candles"]["rows"][-1][4] == str(price)


class TestSystemPrompt:
    def test_every_trait_is_told_typed_or_not_as_written(self) -> None:
        traits = Personality.model_validate(
            {"style": "contrarian", "patience": "0.4", "max_trades": 3, "语气": "谨慎"}
        ).stored()
        context = make_context().model_copy(update={"personality": traits})

        prompt = system_prompt(context, AnswerStyle.JSON_OBJECT)

        line = next(x for x in prompt.splitlines() if x.startswith("Personality: "))
        assert json.loads(line.removeprefix("Personality: ").removesuffix(".")) == traits
        assert '"语气": "谨慎"' in line
