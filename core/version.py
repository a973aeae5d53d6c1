"""The running version, reported by /health and the OpenAPI document."""

__version__ = "0.1.0"
