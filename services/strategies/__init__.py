"""Strategies: a user's strategies with typed parameters, and their backtests."""
