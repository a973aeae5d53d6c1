"""The paper exchange's tests share test_service.py's app fixture: the real services on
each database, the market stepped by hand."""

from tests.services.paper_trading.test_service import services

__all__ = ["services"]
