"""Request bodies with exact decimals.

A JSON number such as `0.1` or `0.123456789012345678901` must reach the ledger as that
exact decimal. The standard parser turns it into a float first, which rounds it; routes
of an `APIRouter(route_class=ExactDecimalRoute)` parse bodies with
`parse_float=Decimal` instead, so no float is ever made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class ExactDecimalRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                # Reported like any other undecodable body (a 422 naming the position),
                # not as FastAPI's bare 400 "error parsing the body".
                raise json.JSONDecodeError(
                    "the body is not UTF-8 text", raw.decode("latin-1"), e.start
                ) from e
            self._json = json.loads(text, parse_float=Decimal)
        return self._json


class ExactDecimalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_decimal_handler(request: Request) -> Response:
            return await handler(ExactDecimalRequest(request.scope, request.receive))

        return exact_decimal_handler
