from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError

from core.config import Settings
from core.exceptions import InsufficientFundsError, NotFoundError
from main_consolidated import create_app
from tests.api.conftest import running_app


class Body(BaseModel):
    quantity: int


def _add_probe_routes(app: FastAPI) -> None:
    """Routes that raise, to exercise the renderer inside the real app."""

    @app.get("/probe/not-found")
    async def not_found() -> None:
        raise NotFoundError("agent 42 not found", details={"agent_id": "42"})

    @app.get("/probe/funds")
    async def funds() -> None:
        raise InsufficientFundsError("needs 100 USD, 12 free", details={"free": "12"})

    @app.post("/probe/body")
    async def body(payload: Body) -> Body:
        return payload

    @app.get("/probe/bug")
    async def bug() -> None:
        raise RuntimeError("secret internals /home/user/app.py line 12")

    @app.get("/probe/connection-lost")
    async def connection_lost() -> None:
        raise DBAPIError("SELECT 1", None, ConnectionError("secret"), connection_invalidated=True)

    @app.get("/probe/sql-bug")
    async def sql_bug() -> None:
        raise DBAPIError("SELECT secret", None, ValueError("secret internals"))


@pytest.fixture
async def probe_client(
    make_settings: Callable[..., Settings], fresh_sqlite_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database={"url": fresh_sqlite_url}, rate_limit_default="5/minute")
    app = create_app(settings)
    _add_probe_routes(app)
    async with running_app(app) as client:
        yield client


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


class TestErrorShape:
    async def test_unknown_route_is_404(self, probe_client: httpx.AsyncClient) -> None:
        body = assert_error_shape(await probe_client.get("/api/v1/nowhere"), 404, "not_found")
        assert body["error"]["message"] == "no route for GET /api/v1/nowhere"

    async def test_domain_error_keeps_code_message_details(
        self, probe_client: httpx.AsyncClient
    ) -> None:
        body = assert_error_shape(await probe_client.get("/probe/not-found"), 404, "not_found")
        assert body["error"]["message"] == "agent 42 not found"
        assert body["error"]["details"] == {"agent_id": "42"}
        body = assert_error_shape(await probe_client.get("/probe/funds"), 422, "insufficient_funds")
        assert body["error"]["details"] == {"free": "12"}

    async def test_validation_error_names_the_field(self, probe_client: httpx.AsyncClient) -> None:
        response = await probe_client.post("/probe/body", json={"quantity": "many"})
        body = assert_error_shape(response, 422, "validation_failed")
        assert body["error"]["message"].startswith("body.quantity:")
        assert body["error"]["details"]["errors"][0]["field"] == "body.quantity"

    async def test_malformed_json_is_422_not_500(self, probe_client: httpx.AsyncClient) -> None:
        response = await probe_client.post(
            "/probe/body", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_error_shape(response, 422, "validation_failed")

    @pytest.mark.parametrize(
        "path", ["/api/v1/trading/paper/order", "/api/v1/market/watchlist", "/api/v1/agents"]
    )
    async def test_body_that_is_not_utf8_is_422_naming_why(
        self, probe_client: httpx.AsyncClient, path: str
    ) -> None:
        response = await probe_client.post(
            path, content=b'{"symbol": "\xff"}', headers={"content-type": "application/json"}
        )
        body = assert_error_shape(response, 422, "validation_failed")
        assert body["error"]["message"] == "body.12: invalid JSON: the body is not UTF-8 text"

    async def test_invalid_json_message_says_what_is_wrong(
        self, probe_client: httpx.AsyncClient
    ) -> None:
        response = await probe_client.post(
            "/api/v1/trading/paper/order",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        body = assert_error_shape(response, 422, "validation_failed")
        assert body["error"]["message"].startswith("body.1: invalid JSON: Expecting property")

    async def test_wrong_method_is_405(self, probe_client: httpx.AsyncClient) -> None:
        assert_error_shape(await probe_client.delete("/api/v1/services"), 405, "method_not_allowed")

    async def test_bug_is_a_bare_500_without_trace(self, probe_client: httpx.AsyncClient) -> None:
        response = await probe_client.get("/probe/bug")
        assert response.status_code == 500
        body = response.json()
        assert body["error"] == {
            "code": "internal_error",
            "message": "internal server error",
            "details": {},
        }
        assert "secret internals" not in response.text
        assert "Traceback" not in response.text
        assert body["request_id"] == response.headers["x-request-id"]

    async def test_lost_database_connection_is_503_to_retry(
        self, probe_client: httpx.AsyncClient
    ) -> None:
        response = await probe_client.get("/probe/connection-lost")
        body = assert_error_shape(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "1"
        assert "secret" not in body["error"]["message"]

    async def test_other_database_error_is_a_bare_500(
        self, probe_client: httpx.AsyncClient
    ) -> None:
        response = await probe_client.get("/probe/sql-bug")
        body = assert_error_shape(response, 500, "internal_error")
        assert "secret" not in response.text
        assert response.headers.get_list("x-request-id") == [body["request_id"]]

    async def test_rate_limit_is_429_with_retry_after(
        self, probe_client: httpx.AsyncClient
    ) -> None:
        statuses = [(await probe_client.get("/api/v1/services")).status_code for _ in range(5)]
        assert statuses == [200] * 5
        response = await probe_client.get("/api/v1/services")
        body = assert_error_shape(response, 429, "rate_limited")
        retry_after = int(response.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert body["error"]["details"]["retry_after_seconds"] == retry_after

    async def test_health_is_never_rate_limited(self, probe_client: httpx.AsyncClient) -> None:
        statuses = {(await probe_client.get("/health")).status_code for _ in range(8)}
        assert statuses == {200}


class TestRequestId:
    async def test_echoes_a_sane_client_id(self, probe_client: httpx.AsyncClient) -> None:
        response = await probe_client.get("/health", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    async def test_replaces_an_unsafe_client_id(self, probe_client: httpx.AsyncClient) -> None:
        response = await probe_client.get("/health", headers={"X-Request-ID": "a b\tc" * 50})
        assert response.headers["x-request-id"] != "a b\tc" * 50
        assert len(response.headers["x-request-id"]) == 32

    async def test_generates_one_when_absent(self, probe_client: httpx.AsyncClient) -> None:
        first = (await probe_client.get("/health")).headers["x-request-id"]
        second = (await probe_client.get("/health")).headers["x-request-id"]
        assert first != second
