from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
import respx

from services.llm.base import RetryPolicy
from services.llm.pricing import PriceTable
from tests.services.llm.support import FakeClock, RecordingSleep, RespxTransport


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(assert_all_called=False)


@pytest.fixture
async def http_client(router: respx.Router) -> AsyncIterator[httpx2.AsyncClient]:
    client = httpx2.AsyncClient(transport=RespxTransport(router))
    yield client
    await client.aclose()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=8.0)


@pytest.fixture
def prices() -> PriceTable:
    return PriceTable()
