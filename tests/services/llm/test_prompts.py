"""The user prompt: what a model is told about the market, the portfolio and the limits."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import respx

from models.agents import Personality
from models.decisions import (
    AgentContext,
    Decision,
    DecisionSummary,
    OpenOrderData,
    SymbolTerms,
    decision_json_schema,
)
from models.enums import DecisionType, OrderSide, OrderType
from services.llm.base import RetryPolicy
from services.llm.pricing import PriceTable
from services.llm.prompts import (
    MAX_CANDLES_IN_PROMPT,
    MAX_RECENT_DECISIONS,
    AnswerStyle,
    system_prompt,
    user_prompt,
)
from services.llm.providers.anthropic import AnthropicProvider
from services.llm.providers.openai import OPENAI_BASE_URL, OpenAIProvider, StructuredOutput
from tests.services.llm.support import (
    ANTHROPIC_URL,
    AS_OF,
    OPENAI_URL,
    FakeClock,
    RecordingSleep,
    anthropic_tool_use,
    decision_payload,
    make_context,
    openai_content,
    openai_tool_call,
    request_json,
    symbol_context,
)

D = Decimal


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


def summaries(count: int) -> list[DecisionSummary]:
    """`count` hold decisions a minute apart, newest first (as the context holds them)."""
    return [
        DecisionSummary(
            created_at=AS_OF - timedelta(minutes=i),
            decision_type=DecisionType.HOLD,
            reasoning=f"decision {i} minutes ago",
        )
        for i in range(count)
    ]


class TestRecentDecisions:
    def test_every_decision_the_context_holds_is_told_newest_first(self) -> None:
        # AGENT_RECENT_DECISIONS above 5: the model used to see only the 5 oldest.
        context = make_context().model_copy(update={"recent_decisions": summaries(8)})

        told = payload(context)["recent_decisions"]

        assert [d["reasoning"] for d in told] == [f"decision {i} minutes ago" for i in range(8)]

    def test_the_newest_are_kept_whatever_order_they_come_in(self) -> None:
        many = summaries(MAX_RECENT_DECISIONS + 3)
        context = make_context().model_copy(update={"recent_decisions": many[::-1]})

        told = payload(context)["recent_decisions"]

        assert len(told) == MAX_RECENT_DECISIONS
        assert told[0]["reasoning"] == "decision 0 minutes ago"
        assert told[-1]["reasoning"] == f"decision {MAX_RECENT_DECISIONS - 1} minutes ago"


class TestPartialCandle:
    def test_an_open_last_candle_is_flagged_and_explained(self) -> None:
        symbol = symbol_context("BTC-USD", [100, 101, 102])
        symbol.candles[-1].partial = True
        closed = symbol_context("ETH-USD", [50, 51])

        data = payload(make_context(symbols=[symbol, closed]))

        assert [s["candles"]["last_partial"] for s in data["symbols"]] == [True, False]
        prompt = system_prompt(make_context(), AnswerStyle.TOOL_CALL)
        assert "last_partial true: its last candle is still open" in prompt


class TestLimitsTold:
    def test_the_system_prompt_names_every_limit_and_cost(self) -> None:
        prompt = system_prompt(make_context(), AnswerStyle.JSON_OBJECT)

        for word in (
            "min_confidence",
            "max_order_value",
            "max_position_value",
            "position_room",
            "max_open_positions",
            "open_positions_remaining",
            "max_daily_loss",
            "daily_loss_remaining",
            "maker_fee_bps",
            "taker_fee_bps",
            "quantity_step",
            "price_tick",
            "min_notional",
            "open_orders",
            "order_ids",
        ):
            assert word in prompt, word

    def test_terms_and_open_orders_reach_the_payload(self) -> None:
        terms = SymbolTerms(
            symbol="BTC-USD",
            maker_fee_bps=D(10),
            taker_fee_bps=D(20),
            quantity_step=D("0.00001"),
            price_tick=D("0.01"),
            min_quantity=D("0.00001"),
            min_notional=D(10),
            position_value=D(600),
            position_room=D(400),
        )
        order = OpenOrderData(
            id="o-1",
            symbol="BTC-USD",
            side=OrderSide.BUY,
            order_type=OrderType.LIMIT,
            remaining_quantity=D("0.6"),
            limit_price=D(1000),
            age_seconds=90,
        )
        context = make_context().model_copy(update={"terms": [terms], "open_orders": [order]})

        data = payload(context)

        assert data["terms"][0]["position_room"] == "400"
        assert data["terms"][0]["taker_fee_bps"] == "20"
        assert data["open_orders"][0] == {
            "id": "o-1",
            "symbol": "BTC-USD",
            "side": "buy",
            "order_type": "limit",
            "remaining_quantity": "0.6",
            "limit_price": "1000",
            "stop_price": None,
            "age_seconds": 90,
            "placed_by_agent": True,
        }


def sent_properties(schema: dict[str, Any]) -> list[str]:
    return list(schema["properties"])


class TestReasoningFirst:
    def test_the_schema_lists_reasoning_first_in_the_models_order(self) -> None:
        properties = sent_properties(decision_json_schema())

        assert properties[0] == "reasoning"
        assert properties == list(Decision.model_fields)

    async def test_openai_sends_reasoning_first_as_a_tool_and_as_a_response_format(
        self,
        router: respx.Router,
        http_client: httpx2.AsyncClient,
        retry: RetryPolicy,
        sleep: RecordingSleep,
        clock: FakeClock,
    ) -> None:
        route = router.post(OPENAI_URL)
        route.side_effect = [
            httpx.Response(200, json=openai_tool_call(json.dumps(decision_payload()))),
            httpx.Response(200, json=openai_content(json.dumps(decision_payload()))),
        ]
        for mode in (StructuredOutput.TOOL_CALL, StructuredOutput.JSON_SCHEMA):
            provider = OpenAIProvider(
                name="openai",
                api_key="sk-test",
                base_url=OPENAI_BASE_URL,
                timeout=5.0,
                structured_output=mode,
                prices=PriceTable(),
                retry=retry,
                sleep=sleep,
                clock=clock,
                http_client=http_client,
            )
            assert (await provider.decide(make_context(), model="gpt-4o-mini")).ok

        tool, response_format = request_json(route, 0), request_json(route, 1)
        assert sent_properties(tool["tools"][0]["function"]["parameters"])[0] == "reasoning"
        schema = response_format["response_format"]["json_schema"]["schema"]
        assert sent_properties(schema)[0] == "reasoning"

    async def test_anthropic_sends_reasoning_first(
        self,
        router: respx.Router,
        http_client: httpx2.AsyncClient,
        retry: RetryPolicy,
        sleep: RecordingSleep,
        clock: FakeClock,
    ) -> None:
        route = router.post(ANTHROPIC_URL).respond(json=anthropic_tool_use(decision_payload()))
        provider = AnthropicProvider(
            api_key="sk-ant-test",
            timeout=5.0,
            prices=PriceTable(),
            retry=retry,
            sleep=sleep,
            clock=clock,
            http_client=http_client,
        )

        assert (await provider.decide(make_context(), model="claude-haiku-4-5")).ok

        sent = request_json(route)
        assert sent_properties(sent["tools"][0]["input_schema"])[0] == "reasoning"
