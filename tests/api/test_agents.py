"""The agents API: what a dashboard and curl see, and every bad input as a clear 4xx."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Settings

AGENTS = "/api/v1/agents"
# What an agent read shows but a PUT cannot set.
READ_ONLY = ("status", "status_reason", "last_decision_at", "created_at", "updated_at", "stats")


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Alpha", "symbols": ["BTC-USD"], "llm_provider": "local", **fields}
    response = await client.post(AGENTS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def send(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    """`body` as JSON exactly, NaN and Infinity included (httpx's own encoder refuses them)."""
    content = json.dumps(body, allow_nan=True)
    headers = {"content-type": "application/json"}
    return await client.request(method, url, content=content, headers=headers)


def message(response: httpx.Response) -> str:
    text: str = response.json()["error"]["message"]
    return text


def editable(agent: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in agent.items() if k not in READ_ONLY}


class TestCreate:
    async def test_creates_an_inactive_agent_with_its_own_funded_account(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, paper_balance="2500", max_position_size=15)

        assert created["status"] == "inactive"
        assert created["symbols"] == ["BTC/USD"]
        assert created["max_position_pct"] == "15"
        assert created["llm_model"] == "rule-based"
        portfolio = await client.get(
            "/api/v1/portfolio/summary", params={"account_id": created["account_id"]}
        )
        assert portfolio.json()["cash"] == "2500"

    @pytest.mark.parametrize(
        ("fields", "status", "needle"),
        [
            ({"symbols": ["NOPE/USD"]}, 404, "NOPE/USD"),
            ({"symbols": []}, 422, "symbols"),
            ({"symbols": ["BTC/USD", "btc/usd"]}, 422, "twice"),
            ({"paper_balance": "-5"}, 422, "paper_balance"),
            ({"risk_tolerance": "1.5"}, 422, "risk_tolerance"),
            ({"max_position_pct": "150"}, 422, "max_position_pct"),
            ({"max_position_pct": "5", "max_position_size": "5"}, 422, "not both"),
            ({"decision_interval_seconds": 1}, 422, "decision_interval_seconds"),
            ({"llm_provider": "skynet"}, 422, "unknown LLM provider"),
            ({"llm_provider": ""}, 422, "body.llm_provider"),
            ({"llm_model": ""}, 422, "body.llm_model"),
            ({"personality": {"aggression": "extreme"}}, 422, "aggression"),
            ({"surprise": True}, 422, "surprise"),
            ({"type": "swing", "agent_type": "swing"}, 422, "send agent_type or type, not both"),
        ],
    )
    async def test_refuses_bad_input_with_the_reason(
        self, client: httpx.AsyncClient, fields: dict[str, Any], status: int, needle: str
    ) -> None:
        body = {"name": "Bad", "symbols": ["BTC/USD"], "llm_provider": "local", **fields}
        response = await client.post(AGENTS, json=body)

        assert response.status_code == status, response.text
        assert needle in response.text

    async def test_type_is_the_seeds_name_of_agent_type(self, client: httpx.AsyncClient) -> None:
        created = await create(client, type="momentum_trader")

        assert created["agent_type"] == "momentum_trader"

    async def test_extra_personality_traits_are_kept_and_returned(
        self, client: httpx.AsyncClient
    ) -> None:
        personality = {
            "aggression": "0.7",
            "patience": "0.4",
            "analysis_depth": "high",
            "max_trades_per_day": 3,
            "conviction": 0.25,
            "likes_round_numbers": False,
        }

        created = await create(client, personality=personality)

        assert created["personality"] == personality
        read = await client.get(f"{AGENTS}/{created['id']}")
        assert read.json()["personality"] == personality

    @pytest.mark.parametrize(
        ("personality", "expected"),
        [
            ({"risk": {"max": 1}}, "body.personality.risk: a trait is one text, number or "),
            (
                {"tags": ["calm"]},
                "body.personality.tags: a trait is one text, number or boolean, not a list",
            ),
            ({"mood": None}, "body.personality.mood: a trait cannot be null"),
            (
                {"story": "x" * 501},
                "body.personality.story: a text trait has at most 500 characters",
            ),
            ({"x" * 51: 1}, "body.personality: trait name 'xxxxx"),
            ({f"trait_{i}": i for i in range(21)}, "body.personality: at most 20 traits"),
            ({"": 1}, "body.personality: a trait needs a name"),
            (
                {"aggression": "extreme"},
                "body.personality.aggression: must be a number from 0 to 1",
            ),
            ({"aggression": "NaN"}, "body.personality.aggression: must be a number from 0 to 1"),
            ({"edge": float("inf")}, "body.personality.edge: the number must be finite"),
        ],
    )
    async def test_a_bad_trait_is_refused_naming_it(
        self, client: httpx.AsyncClient, personality: dict[str, Any], expected: str
    ) -> None:
        body = {"name": "Odd", "symbols": ["BTC/USD"], "personality": personality}
        response = await send(client, "POST", AGENTS, body)

        assert response.status_code == 422, response.text
        assert message(response).startswith(expected), message(response)

    async def test_a_number_trait_kept_inexactly_is_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        content = (
            '{"name": "Pi", "symbols": ["BTC/USD"], "personality": {"pi": 3.14159265358979323846}}'
        )
        response = await client.post(
            AGENTS, content=content, headers={"content-type": "application/json"}
        )

        assert response.status_code == 422, response.text
        assert message(response).startswith("body.personality.pi: the number cannot be kept")

    async def test_a_name_is_unique_among_live_agents(self, client: httpx.AsyncClient) -> None:
        first = await create(client, name="Twin")
        again = await client.post(AGENTS, json={"name": "Twin", "symbols": ["BTC/USD"]})
        assert again.status_code == 422
        assert again.json()["error"]["code"] == "name_taken"

        assert (await client.delete(f"{AGENTS}/{first['id']}")).status_code == 204
        await create(client, name="Twin")


class TestLifecycle:
    async def test_start_stop_and_status(self, client: httpx.AsyncClient) -> None:
        created = await create(client)

        started = await client.post(f"{AGENTS}/{created['id']}/start")
        assert started.json()["status"] == "active"
        statuses = {s["id"]: s for s in (await client.get(f"{AGENTS}/status")).json()}
        assert statuses[created["id"]]["status"] == "active"
        assert statuses[created["id"]]["next_run_at"] is not None
        assert statuses[created["id"]]["stats"]["equity"] == "10000"

        stopped = await client.post(f"{AGENTS}/{created['id']}/stop")
        assert stopped.json()["status"] == "inactive"
        assert stopped.json()["status_reason"] == "stopped by the user"

    async def test_a_missing_key_refuses_start_with_the_reason(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, llm_provider="openai", llm_model="gpt-4o-mini")

        response = await client.post(f"{AGENTS}/{created['id']}/start")

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "agent_cannot_start"
        assert "OPENAI_API_KEY" in response.json()["error"]["message"]

    async def test_update_changes_only_what_is_sent(self, client: httpx.AsyncClient) -> None:
        created = await create(client, risk_tolerance="0.2")

        response = await client.put(
            f"{AGENTS}/{created['id']}", json={"decision_interval_seconds": 60}
        )

        assert response.status_code == 200
        assert response.json()["decision_interval_seconds"] == 60
        assert response.json()["risk_tolerance"] == "0.2"

    async def test_unknown_agents_are_404(self, client: httpx.AsyncClient) -> None:
        missing = "00000000-0000-0000-0000-000000000001"
        for method, path in [
            ("GET", missing),
            ("PUT", missing),
            ("DELETE", missing),
            ("POST", f"{missing}/start"),
            ("POST", f"{missing}/execute-decision"),
            ("GET", f"{missing}/decisions"),
        ]:
            response = await client.request(method, f"{AGENTS}/{path}", json={})
            assert response.status_code == 404, (method, path, response.text)


class TestDecisions:
    async def test_execute_then_filter_the_log(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        base = f"{AGENTS}/{created['id']}"
        cycle = await client.post(f"{base}/execute-decision")
        assert cycle.status_code == 200
        override = await client.post(
            f"{base}/execute-decision",
            json={
                "decision": {
                    "decision_type": "trade",
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "quantity": 0.001,
                    "reasoning": "manual",
                    "confidence_score": 0.9,
                }
            },
        )
        assert override.status_code == 200
        assert override.json()["trigger"] == "override"
        assert override.json()["quantity"] == "0.001"

        buys = await client.get(f"{base}/decisions", params={"action_taken": "buy"})
        assert [d["id"] for d in buys.json()["items"]] == [override.json()["id"]]
        everything = await client.get(f"{base}/decisions", params={"limit": 1})
        assert everything.json()["total"] == 2
        assert everything.json()["items"][0]["id"] == override.json()["id"]
        detail = await client.get(f"{base}/decisions/{cycle.json()['id']}")
        assert detail.json()["llm_call"]["provider"] == "local"
        replay = await client.post(f"{base}/decisions/{override.json()['id']}/replay")
        assert replay.json()["same_action"] is True

    async def test_an_invalid_override_is_422(self, client: httpx.AsyncClient) -> None:
        created = await create(client)

        response = await client.post(
            f"{AGENTS}/{created['id']}/execute-decision",
            json={"decision": {"decision_type": "trade", "reasoning": "x", "confidence_score": 1}},
        )

        assert response.status_code == 422
        assert "symbol" in response.text

    async def test_coordination_needs_the_symbol_on_every_agent(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await create(client, name="One")
        second = await create(client, name="Two", symbols=["ETH/USD"])

        response = await client.post(
            f"{AGENTS}/coordinate-decision",
            json={"agent_ids": [first["id"], second["id"]], "symbol": "BTC/USD"},
        )

        assert response.status_code == 422
        assert "does not trade BTC/USD" in response.json()["error"]["message"]


# Bodies that answered HTTP 500 (PostgreSQL refusing NUL, a CHECK constraint or an
# amount rounded to 0 by the 18-decimal storage) and now answer 422 naming the field.
ONCE_500 = [
    ({"llm_provider": "skynet", "llm_model": "x"}, "unknown LLM provider 'skynet'"),
    ({"name": "nul\u0000byte"}, "body.name: must not contain the NUL character"),
    ({"agent_type": "\u0000"}, "body.agent_type: must not contain the NUL character"),
    ({"strategies": ["RSI\u0000"]}, "body.strategies.0: must not contain the NUL character"),
    ({"llm_model": "gpt\u0000"}, "body.llm_model: must not contain the NUL character"),
    ({"personality": {"style": "\u0000"}}, "body.personality.style: must not contain"),
    ({"personality": {"note": "a\u0000"}}, "body.personality.note: the text contains the NUL"),
    ({"max_position_pct": "1e-50"}, "body.max_position_pct: Decimal input should have no more"),
    ({"max_position_size": "1e-50"}, "body.max_position_size: Decimal input should have no more"),
]


class TestUpdate:
    async def test_the_body_that_created_the_agent_is_accepted_back(
        self, client: httpx.AsyncClient
    ) -> None:
        body = {
            "name": "Maker",
            "type": "momentum_trader",
            "symbols": ["BTC-USD", "ETH/USD"],
            "llm_provider": "local",
            "paper_balance": "2500",
            "max_position_size": 15,
            "risk_tolerance": "0.25",
            "personality": {"aggression": "high", "patience": "0.4"},
            "strategies": ["RSI Mean Reversion"],
            "decision_interval_seconds": 60,
            "daily_cost_budget": "0.5",
        }
        created = await client.post(AGENTS, json=body)
        assert created.status_code == 201, created.text

        response = await client.put(f"{AGENTS}/{created.json()['id']}", json=body)

        assert response.status_code == 200, response.text
        assert editable(response.json()) == editable(created.json())

    async def test_the_agent_as_read_is_accepted_back_and_edits_apply(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, personality={"aggression": "0.3", "patience": "0.9"})
        url = f"{AGENTS}/{created['id']}"
        read = (await client.get(url)).json()

        unchanged = await client.put(url, json=read)
        assert unchanged.status_code == 200, unchanged.text
        assert editable(unchanged.json()) == editable(read)

        edited = {**read, "risk_tolerance": "0.8", "personality": {"patience": "0.2"}}
        response = await client.put(url, json=edited)

        assert response.status_code == 200, response.text
        assert response.json()["risk_tolerance"] == "0.8"
        assert response.json()["personality"] == {"patience": "0.2"}

    async def test_a_seed_agent_as_read_is_accepted_back(self, client: httpx.AsyncClient) -> None:
        # The seed's personality has traits of its own (patience, analysis_depth).
        agents = (await client.get(AGENTS)).json()
        seeded = next(a for a in agents if a["name"] == "Alpha Trader")

        response = await client.put(f"{AGENTS}/{seeded['id']}", json=seeded)

        assert response.status_code == 200, response.text
        assert response.json()["personality"] == seeded["personality"]
        assert "analysis_depth" in seeded["personality"]

    @pytest.mark.parametrize(
        ("change", "field", "expected"),
        [
            (
                {"paper_balance": "5000"},
                "paper_balance",
                "paper_balance cannot change after creation (this agent's account was funded "
                "with 10000): create a new agent with the balance you want",
            ),
            (
                {"agent_type": "scalper"},
                "agent_type",
                "agent_type cannot change after creation (this agent is 'trading'): create a "
                "new agent of type 'scalper'",
            ),
            ({"type": "scalper"}, "agent_type", "agent_type cannot change after creation"),
            (
                {"id": "00000000-0000-0000-0000-000000000001"},
                "id",
                "id 00000000-0000-0000-0000-000000000001 is not this agent's",
            ),
            (
                {"account_id": "00000000-0000-0000-0000-000000000001"},
                "account_id",
                "account_id 00000000-0000-0000-0000-000000000001 is not this agent's account",
            ),
        ],
    )
    async def test_changing_a_fixed_field_is_refused_saying_what_to_do(
        self, client: httpx.AsyncClient, change: dict[str, Any], field: str, expected: str
    ) -> None:
        created = await create(client)
        url = f"{AGENTS}/{created['id']}"
        read = (await client.get(url)).json()

        body = {**read, **change}
        if "type" in change:  # the seed's name instead of agent_type, not beside it
            del body["agent_type"]
        response = await client.put(url, json=body)

        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "field_cannot_change"
        assert response.json()["error"]["details"]["field"] == field
        assert message(response).startswith(expected), message(response)
        after = (await client.get(url)).json()
        assert editable(after) == editable(read)

    async def test_read_only_fields_are_ignored(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        url = f"{AGENTS}/{created['id']}"

        response = await client.put(
            url,
            json={
                "status": "active",
                "status_reason": "made up",
                "created_at": "2000-01-01T00:00:00Z",
                "last_decision_at": None,
                "decision_interval_seconds": 90,
            },
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "inactive"
        assert response.json()["created_at"] == created["created_at"]
        assert response.json()["decision_interval_seconds"] == 90

    async def test_the_same_provider_keeps_the_model_another_takes_its_default(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, llm_provider="openai", llm_model="gpt-4o")
        url = f"{AGENTS}/{created['id']}"

        same = await client.put(url, json={"llm_provider": "OpenAI"})
        assert same.status_code == 200, same.text
        assert same.json()["llm_model"] == "gpt-4o"

        other = await client.put(url, json={"llm_provider": "local"})
        assert other.json()["llm_model"] == "rule-based"

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            # The one schemathesis found.
            ({"llm_provider": ""}, "body.llm_provider: String should have at least 1 character"),
            ({"llm_provider": " "}, "body.llm_provider: String should have at least 1 character"),
            *ONCE_500,
        ],
    )
    async def test_bodies_that_answered_500_are_422_naming_the_field(
        self, client: httpx.AsyncClient, body: dict[str, Any], expected: str
    ) -> None:
        created = await create(client)

        response = await send(client, "PUT", f"{AGENTS}/{created['id']}", body)

        assert response.status_code == 422, response.text
        assert message(response).startswith(expected), message(response)


class TestCreateEdges:
    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            *ONCE_500,
            ({"paper_balance": "1e-30"}, "body.paper_balance: Decimal input should have no more"),
            # Stored as 1000000000, which its own PUT then refused (at most 999999999...).
            (
                {"daily_cost_budget": "999999999.9999999999999999999"},
                "body.daily_cost_budget: Decimal input should have no more",
            ),
        ],
    )
    async def test_bodies_that_answered_500_are_422_naming_the_field(
        self, client: httpx.AsyncClient, fields: dict[str, Any], expected: str
    ) -> None:
        body = {"name": "Edge", "symbols": ["BTC/USD"], "llm_provider": "local", **fields}

        response = await send(client, "POST", AGENTS, body)

        assert response.status_code == 422, response.text
        assert message(response).startswith(expected), message(response)


class TestDecisionLogEdges:
    @pytest.mark.parametrize(
        ("params", "status", "expected"),
        [
            ({"start": "2026-01-01T00:00:00"}, 200, None),  # no zone: UTC (was a 500)
            (
                {"start": "0001-01-01T00:00:00+01:00"},
                422,
                "query.start: is outside the years 1 to 9999 once in UTC",
            ),
            (
                {"end": "9999-12-31T23:59:59-01:00"},
                422,
                "query.end: is outside the years 1 to 9999 once in UTC",
            ),
            (
                {"offset": str(10**20)},
                422,
                "query.offset: Input should be less than or equal to 1000000000",
            ),
            ({"symbol": "BTC\u0000"}, 422, "query.symbol: must not contain the NUL character"),
        ],
    )
    async def test_query_edges_are_answered_not_500(
        self,
        client: httpx.AsyncClient,
        params: dict[str, str],
        status: int,
        expected: str | None,
    ) -> None:
        created = await create(client)

        response = await client.get(f"{AGENTS}/{created['id']}/decisions", params=params)

        assert response.status_code == status, response.text
        if expected is not None:
            assert message(response).startswith(expected), message(response)

    @pytest.mark.parametrize(
        ("decision", "expected"),
        [
            (
                {"decision_type": "hold", "reasoning": "flat\u0000", "confidence_score": 0.5},
                "body: decision.reasoning: must not contain the NUL character",
            ),
            (
                {
                    "decision_type": "trade",
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "order_type": "limit",
                    "limit_price": "1e-30",
                    "quantity": "0.001",
                    "reasoning": "cheap",
                    "confidence_score": 0.9,
                },
                "body: decision.limit_price: has more than 18 decimal places",
            ),
            (
                {
                    "decision_type": "trade",
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "quantity": "1e30",
                    "reasoning": "all in",
                    "confidence_score": 0.9,
                },
                "body: decision.quantity: 1000000000000000000000000000000 is out of range",
            ),
        ],
    )
    async def test_an_override_the_log_cannot_keep_is_422(
        self, client: httpx.AsyncClient, decision: dict[str, Any], expected: str
    ) -> None:
        created = await create(client)
        url = f"{AGENTS}/{created['id']}/execute-decision"

        response = await send(client, "POST", url, {"decision": decision})

        assert response.status_code == 422, response.text
        assert message(response).startswith(expected), message(response)
        log = await client.get(f"{AGENTS}/{created['id']}/decisions")
        assert log.json()["total"] == 0


# -- property-based: any body, never a 500 -----------------------------------------------

_EDGE_TEXT = [
    "", " ", "\u0000", "a\u0000b", "\ud800", "名前🚀", "NaN", "sNaN", "-Infinity", "1e-50",
    "1E+30", "-0", "0.1", "1", "100", "0.9999999999999999999", "BTC/USD", "btc-usd", "ETH/USD",
    "NOPE/USD", "local", "LOCAL ", "openai", "skynet", "high", "swing", "x" * 600,
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(_EDGE_TEXT),
    st.text(max_size=40),
)
_ANY = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)
_TRAIT_NAMES = st.one_of(
    st.sampled_from(["aggression", "style", "description", "time_horizon", "patience", ""]),
    st.text(max_size=60),
)


def _amounts(low: int, high: int) -> st.SearchStrategy[Any]:
    """Amounts near and beyond the range, as strings and as JSON numbers."""
    exact = st.integers(min_value=0, max_value=20).flatmap(
        lambda places: st.decimals(min_value=low, max_value=high, places=places)
    )
    return st.one_of(
        st.decimals(min_value=low - 1, max_value=high + 1, allow_nan=False).map(str),
        exact.map(str),
        st.floats(min_value=low - 1, max_value=high + 1),
        st.integers(min_value=low - 1, max_value=high + 1),
    )


# Plausible values, boundaries included: alone they are mostly accepted, so a body with
# one wild field (below) reaches the code behind validation.
_PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": st.text(max_size=101),
    "agent_type": st.one_of(st.just("trading"), st.text(max_size=51)),
    "personality": st.dictionaries(
        _TRAIT_NAMES,
        st.one_of(st.text(max_size=501), st.integers(), st.floats(), st.booleans()),
        max_size=22,
    ),
    "strategies": st.lists(st.text(max_size=101), max_size=21),
    "symbols": st.lists(st.sampled_from(_EDGE_TEXT[16:20]), min_size=1, max_size=4),
    "risk_tolerance": _amounts(0, 1),
    "max_position_pct": _amounts(0, 100),
    "llm_provider": st.sampled_from(["local", "LOCAL ", "openai", "anthropic", "openrouter"]),
    "llm_model": st.text(max_size=201),
    "decision_interval_seconds": st.integers(min_value=0, max_value=100_000),
    "daily_cost_budget": _amounts(0, 10**9),
    "paper_balance": st.just("10000"),
    "status": st.sampled_from(["active", "paused", "inactive"]),
    "created_at": st.datetimes().map(lambda moment: moment.isoformat()),
}
_ALL_FIELDS = [*_PLAUSIBLE, "type", "max_position_size", "id", "stats", "surprise"]
BODIES = st.builds(
    lambda plausible, wild: {**plausible, **dict(wild)},
    st.fixed_dictionaries({}, optional=_PLAUSIBLE),
    st.lists(st.tuples(st.sampled_from(_ALL_FIELDS), _ANY), max_size=1),
)


def examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` values of `strategy`, the same every run (derandomized). Drawn up front,
    because the app under test lives in this test's event loop."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found


class TestAnyBody:
    @pytest.fixture
    def app_settings(self, make_settings: Callable[..., Settings], database_url: str) -> Settings:
        # Hundreds of requests in a test: above the default rate limit of one client.
        return make_settings(
            database={"url": database_url}, redis={"url": ""}, rate_limit_default="10000/minute"
        )

    async def assert_answered(
        self, client: httpx.AsyncClient, method: str, url: str, body: Any
    ) -> httpx.Response:
        response = await send(client, method, url, body)
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            assert message(response), (body, response.text)
        return response

    async def assert_round_trips(self, client: httpx.AsyncClient, agent_id: str) -> None:
        """What was accepted reads back, and the read is accepted back unchanged."""
        url = f"{AGENTS}/{agent_id}"
        read = await client.get(url)
        assert read.status_code == 200, read.text
        again = await client.put(url, json=read.json())
        assert again.status_code == 200, (read.json(), again.text)
        assert editable(again.json()) == editable(read.json())

    async def test_any_put_body_is_answered_and_what_is_accepted_round_trips(
        self, client: httpx.AsyncClient
    ) -> None:
        agent_id = (await create(client, name="Target"))["id"]

        for body in examples(BODIES, 150):
            response = await self.assert_answered(client, "PUT", f"{AGENTS}/{agent_id}", body)
            if response.status_code == 200:
                await self.assert_round_trips(client, agent_id)

    async def test_any_create_body_is_answered_and_what_is_accepted_round_trips(
        self, client: httpx.AsyncClient
    ) -> None:
        for number, body in enumerate(examples(BODIES, 100)):
            body.setdefault("name", f"Fuzzed {number}")
            body.setdefault("symbols", ["BTC/USD"])
            response = await self.assert_answered(client, "POST", AGENTS, body)
            if response.status_code == 201:
                await self.assert_round_trips(client, response.json()["id"])


class TestReplayAndCalibrationRoutes:
    async def test_a_replay_reports_its_mode_differences_and_cost(
        self, client: httpx.AsyncClient
    ) -> None:
        base = f"{AGENTS}/{(await create(client, name='Replayed'))['id']}"
        cycle = await client.post(f"{base}/execute-decision")
        assert cycle.status_code == 200, cycle.text

        replay = await client.post(f"{base}/decisions/{cycle.json()['id']}/replay")

        assert replay.status_code == 200, replay.text
        body = replay.json()
        assert (body["mode"], body["provider"], body["differences"]) == ("rules", "local", [])
        assert (body["same_decision"], body["cost"]) == (True, "0")

    async def test_a_replay_body_with_an_unknown_field_is_422(
        self, client: httpx.AsyncClient
    ) -> None:
        base = f"{AGENTS}/{(await create(client, name='Strict'))['id']}"
        cycle = await client.post(f"{base}/execute-decision")

        replay = await client.post(
            f"{base}/decisions/{cycle.json()['id']}/replay", json={"temperature": 0}
        )

        assert replay.status_code == 422
        assert "temperature" in replay.text

    async def test_re_asking_an_unconfigured_provider_is_422(
        self, client: httpx.AsyncClient
    ) -> None:
        base = f"{AGENTS}/{(await create(client, name='Keyless'))['id']}"
        cycle = await client.post(f"{base}/execute-decision")

        replay = await client.post(
            f"{base}/decisions/{cycle.json()['id']}/replay", json={"provider": "anthropic"}
        )

        assert replay.status_code == 422
        assert "ANTHROPIC_API_KEY" in message(replay)

    async def test_an_override_has_no_model_to_re_ask(self, client: httpx.AsyncClient) -> None:
        base = f"{AGENTS}/{(await create(client, name='Given'))['id']}"
        override = await client.post(
            f"{base}/execute-decision",
            json={
                "decision": {
                    "decision_type": "hold",
                    "symbol": "BTC/USD",
                    "reasoning": "manual",
                    "confidence_score": "0.5",
                }
            },
        )

        replay = await client.post(
            f"{base}/decisions/{override.json()['id']}/replay", json={"model": "rule-based"}
        )

        assert replay.status_code == 422
        assert replay.json()["error"]["code"] == "not_replayable"

    async def test_calibration_lists_how_each_outcome_was_judged(
        self, client: httpx.AsyncClient
    ) -> None:
        base = f"{AGENTS}/{(await create(client, name='Judge'))['id']}"
        bought = await client.post(
            f"{base}/execute-decision",
            json={
                "decision": {
                    "decision_type": "trade",
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "quantity": "0.001",
                    "reasoning": "in",
                    "confidence_score": "0.8",
                }
            },
        )
        assert bought.status_code == 200, bought.text
        sold = await client.post(
            f"{base}/execute-decision",
            json={
                "decision": {
                    "decision_type": "trade",
                    "symbol": "BTC/USD",
                    "side": "sell",
                    "quantity": "0.001",
                    "reasoning": "out",
                    "confidence_score": "0.8",
                }
            },
        )
        assert sold.status_code == 200, sold.text

        calibration = await client.get(f"{base}/calibration")

        assert calibration.status_code == 200
        body = calibration.json()
        assert (body["trades"], body["realised"], body["horizon"]) == (1, 1, 0)
        assert body["outcomes"][0]["outcome"] == "realised"
        assert body["outcomes"][0]["decision_id"] == bought.json()["id"]


class TestCostLimits:
    async def test_an_agent_on_a_model_of_unknown_cost_is_refused_with_the_reason(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            AGENTS,
            json={
                "name": "Unpriced",
                "symbols": ["BTC/USD"],
                "llm_provider": "openai",
                "llm_model": "acme-unpriced-1",
            },
        )

        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "model_unpriced"
        assert "LLM_PRICES" in error["message"]
        assert "daily_token_budget" in error["message"]
        assert error["details"] == {"provider": "openai", "model": "acme-unpriced-1"}

    async def test_a_token_budget_admits_it_and_the_read_shows_the_new_fields(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(
            client,
            llm_provider="openai",
            llm_model="acme-unpriced-1",
            daily_token_budget=50_000,
            llm_fallbacks=[{"provider": "local", "model": "rule-based"}],
        )

        assert created["daily_token_budget"] == 50_000
        assert created["llm_fallbacks"] == [{"provider": "local", "model": "rule-based"}]
        assert created["paused_until"] is None
        # The agent as read goes back unchanged (paused_until is read-only).
        put = await client.put(f"{AGENTS}/{created['id']}", json=created)
        assert put.status_code == 200, put.text
        assert put.json()["llm_fallbacks"] == created["llm_fallbacks"]

    @pytest.mark.parametrize(
        ("fields", "where"),
        [
            ({"daily_token_budget": 0}, "daily_token_budget"),
            (
                {"llm_fallbacks": [{"provider": "local", "model": f"m{i}"} for i in range(4)]},
                "llm_fallbacks",
            ),
            ({"llm_fallbacks": [{"provider": "local"}]}, "llm_fallbacks"),
        ],
    )
    async def test_a_bad_token_budget_or_fallback_chain_is_a_422(
        self, client: httpx.AsyncClient, fields: dict[str, Any], where: str
    ) -> None:
        body = {"name": "Bad", "symbols": ["BTC/USD"], "llm_provider": "local", **fields}

        response = await client.post(AGENTS, json=body)

        assert response.status_code == 422, response.text
        assert where in message(response)

    async def test_a_decision_shows_its_cost_and_who_answered(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, name="Answered")
        decided = await client.post(f"{AGENTS}/{created['id']}/execute-decision", json={})
        assert decided.status_code == 200, decided.text

        detail = await client.get(f"{AGENTS}/{created['id']}/decisions/{decided.json()['id']}")

        body = detail.json()
        assert body["cost"] == "0"
        assert body["answered_by"] == {"provider": "local", "model": "rule-based"}
        assert body["llm_call"]["cost"] == "0"
        statuses = (await client.get(f"{AGENTS}/status")).json()
        mine = next(s for s in statuses if s["id"] == created["id"])
        assert (mine["unknown_cost_calls_today"], mine["tokens_today"]) == (0, 0)
        assert mine["daily_token_budget"] is None
