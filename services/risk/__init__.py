"""Risk: metrics, stress tests, user limits on every order path, alerts and the kill switch."""
