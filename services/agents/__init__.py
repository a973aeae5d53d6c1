"""Pure agent rules: the pre-trade risk check, combining agents' views, confidence calibration."""
