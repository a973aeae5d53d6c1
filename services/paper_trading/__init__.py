"""The paper exchange: a pure matching core (matching, rules) under the trading service."""
