"""The OpenAPI document a client is generated from: stable operation ids, one error body.

The dashboard generates its client from this document: an operationId is a function
name there, and every documented error is typed as `ErrorResponse`, the one body the
app sends for every error (core/middleware.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from core.config import Settings
from main_consolidated import create_app
from models.base import ErrorResponse

API_PREFIX = "/api/v1"
ERROR_REF = "#/components/schemas/ErrorResponse"
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})

# Renaming one renames a function in every generated client: change it here on purpose.
OPERATION_IDS = {
    # system
    "getHealth",
    "listServices",
    # websocket
    "getAsyncApiDocument",
    # market
    "getLiveMarketData",
    "getHistoricalCandles",
    "listTradingPairs",
    "getWatchlist",
    "addToWatchlist",
    "removeFromWatchlist",
    "subscribeToMarketData",
    "importCandles",
    "getImportedCandles",
    # trading
    "placePaperOrder",
    "listPaperOrders",
    "getPaperOrderHistory",
    "getPaperOrder",
    "cancelPaperOrder",
    "replacePaperOrder",
    "cancelAllPaperOrders",
    "listPaperFills",
    "closePaperPosition",
    "closeAllPaperPositions",
    "resetPaperAccount",
    "resetDefaultPaperAccount",
    "getPaperPortfolio",
    "getPaperMetrics",
    # portfolio
    "getPortfolioSummary",
    "listPortfolioPositions",
    "getPortfolioPerformance",
    "rebalancePortfolio",
    # agents
    "listAgents",
    "createAgent",
    "listAgentStatuses",
    "coordinateAgentDecision",
    "getAgent",
    "updateAgent",
    "deleteAgent",
    "startAgent",
    "stopAgent",
    "executeAgentDecision",
    "listAgentDecisions",
    "getAgentDecision",
    "replayAgentDecision",
    "getAgentCalibration",
    "backtestAgent",
    "createRiskLimit",
    "listRiskLimits",
    "getRiskLimit",
    "updateRiskLimit",
    "deleteRiskLimit",
    "engageKillSwitch",
    "listKillSwitches",
    "releaseKillSwitch",
    "listRiskAlerts",
    "acknowledgeRiskAlerts",
    "runStressTest",
    "getRiskMetrics",
    # strategies
    "createStrategy",
    "listStrategies",
    "getStrategy",
    "updateStrategy",
    "deleteStrategy",
    "backtestStrategy",
    "lookaheadCheckStrategy",
    "startStrategyBacktest",
    "startAgentBacktest",
    "listStrategySignals",
    # backtest runs
    "listBacktests",
    "getBacktest",
    "cancelBacktest",
    "deleteBacktest",
}

CAMEL_CASE = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+")
# FastAPI's own ids: `{function}_{path}_{method}`, e.g. place_order_api_v1_trading_paper_order_post.
GENERATED = re.compile(r".*_(?:get|put|post|delete|patch|head|options|trace)$")


@pytest.fixture
def spec(make_settings: Callable[..., Settings]) -> dict[str, Any]:
    document: dict[str, Any] = create_app(make_settings(redis={"url": ""})).openapi()
    return document


Operation = tuple[str, str, dict[str, Any]]


def operations(spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _label(path: str, method: str) -> str:
    return f"{method.upper()} {path}"


def _error_ref(response: dict[str, Any]) -> str | None:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref: str | None = schema.get("$ref")
    return ref


def _has_path_parameter(operation: dict[str, Any]) -> bool:
    return any(p["in"] == "path" for p in operation.get("parameters", []))


def _has_json_body(operation: dict[str, Any]) -> bool:
    # A JSON body may name ids that are not found; a CSV upload names none.
    return "application/json" in operation.get("requestBody", {}).get("content", {})


class TestOperationIds:
    def test_the_ids_are_exactly_the_documented_ones(self, spec: dict[str, Any]) -> None:
        ids = [op.get("operationId") for _, _, op in operations(spec)]
        assert len(ids) == len(set(ids)), "an operationId is used twice"
        assert set(ids) == OPERATION_IDS

    def test_every_id_is_camel_case_and_not_generated(self, spec: dict[str, Any]) -> None:
        for path, method, op in operations(spec):
            op_id = op["operationId"]
            assert CAMEL_CASE.fullmatch(op_id), (_label(path, method), op_id)
            assert not GENERATED.fullmatch(op_id), (_label(path, method), op_id)

    def test_the_two_order_list_routes_have_their_own_ids(self, spec: dict[str, Any]) -> None:
        base = f"{API_PREFIX}/trading/paper"
        assert spec["paths"][f"{base}/orders"]["get"]["operationId"] == "listPaperOrders"
        assert spec["paths"][f"{base}/history"]["get"]["operationId"] == "getPaperOrderHistory"

    def test_every_operation_has_a_one_line_summary(self, spec: dict[str, Any]) -> None:
        for path, method, op in operations(spec):
            summary = op.get("summary", "")
            assert summary.strip(), _label(path, method)
            assert "\n" not in summary, _label(path, method)


class TestErrorResponses:
    def test_every_4xx_has_the_error_response_body(self, spec: dict[str, Any]) -> None:
        for path, method, op in operations(spec):
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    assert _error_ref(response) == ERROR_REF, (_label(path, method), status)

    def test_ids_and_bodies_document_404_and_422(self, spec: dict[str, Any]) -> None:
        checked = 0
        for path, method, op in operations(spec):
            if _has_path_parameter(op) or _has_json_body(op):
                checked += 1
                for status in ("404", "422"):
                    response = op["responses"].get(status)
                    assert response is not None, (_label(path, method), status)
                    assert _error_ref(response) == ERROR_REF, (_label(path, method), status)
        assert checked >= 20

    def test_every_parameter_can_fail_as_a_documented_422(self, spec: dict[str, Any]) -> None:
        for path, method, op in operations(spec):
            if op.get("parameters") or "requestBody" in op:
                assert "422" in op["responses"], _label(path, method)

    def test_conflicts_are_documented_where_services_raise_them(self, spec: dict[str, Any]) -> None:
        conflicts = {op["operationId"] for _, _, op in operations(spec) if "409" in op["responses"]}
        assert conflicts == {
            "placePaperOrder",  # client_order_id reused, ledger conflict, kill switch
            "cancelPaperOrder",  # already closed
            "replacePaperOrder",  # already closed, client_order_id reused, kill switch
            "closePaperPosition",  # the account changed under the sell (retry), kill switch
            "addToWatchlist",  # already watched
            "executeAgentDecision",  # daily budget spent
            "createRiskLimit",  # an active limit of the same scope exists
            "updateRiskLimit",  # activating it would duplicate one
            "releaseKillSwitch",  # released already
            "createStrategy",  # the name is taken
            "updateStrategy",  # the new name is taken
            "startStrategyBacktest",  # too many backtests live
            "startAgentBacktest",  # too many backtests live
            "cancelBacktest",  # the run has ended
            "deleteBacktest",  # the run is live
        }

    def test_every_route_under_the_api_prefix_documents_429(self, spec: dict[str, Any]) -> None:
        for path, method, op in operations(spec):
            response = op["responses"].get("429")
            if path.startswith(f"{API_PREFIX}/"):
                assert response is not None, _label(path, method)
                assert _error_ref(response) == ERROR_REF
                assert "Retry-After" in response["headers"]
            else:  # /health is exempt, /asyncapi.json is not under the limiter
                assert response is None, _label(path, method)

    def test_fastapi_default_validation_schema_is_gone(self, spec: dict[str, Any]) -> None:
        schemas = spec["components"]["schemas"]
        assert "HTTPValidationError" not in schemas
        assert "ValidationError" not in schemas
        assert "HTTPValidationError" not in repr(spec)

    def test_the_schema_is_the_models(self, spec: dict[str, Any]) -> None:
        model = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = model.pop("$defs")
        schemas = spec["components"]["schemas"]
        assert schemas["ErrorResponse"] == model
        for name, schema in defs.items():
            assert schemas[name] == schema


def assert_error_response(response: httpx.Response, status: int, code: str) -> ErrorResponse:
    """The body validates against ErrorResponse (which refuses unknown fields)."""
    assert response.status_code == status, response.text
    body = ErrorResponse.model_validate_json(response.content)
    assert body.error.code == code
    assert body.request_id == response.headers["x-request-id"]
    return body


class TestRealErrorsMatchTheSchema:
    async def test_a_404(self, client: httpx.AsyncClient) -> None:
        missing = uuid.uuid4()
        response = await client.get(f"{API_PREFIX}/trading/paper/orders/{missing}")
        body = assert_error_response(response, 404, "not_found")
        assert body.error.details == {"order_id": str(missing)}

    async def test_a_422_from_request_validation(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{API_PREFIX}/agents/not-a-uuid")
        body = assert_error_response(response, 422, "validation_failed")
        assert body.error.details["errors"][0]["field"] == "path.agent_id"

    async def test_a_422_from_a_domain_rule(self, client: httpx.AsyncClient) -> None:
        order = {"symbol": "BTC/USD", "side": "sell", "quantity": "1"}
        response = await client.post(f"{API_PREFIX}/trading/paper/order", json=order)
        assert_error_response(response, 422, "insufficient_funds")

    async def test_a_409(self, client: httpx.AsyncClient) -> None:
        url = f"{API_PREFIX}/market/watchlist"
        assert (await client.post(url, json={"symbol": "ETH/USD"})).status_code == 201
        response = await client.post(url, json={"symbol": "ETH/USD"})
        assert_error_response(response, 409, "conflict")
