"""The quiet services (tests/services/quiet.py) as this folder's `services` fixture."""

from tests.services.quiet import services

__all__ = ["services"]
