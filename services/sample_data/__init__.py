"""Sample data: the pairs, prices and demo agents a fresh install starts with."""
