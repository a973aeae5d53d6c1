"""The paper exchange: `service.PaperTradingService` is the entry point; `matching` and
`rules` are its pure core (book walking, fees, the resting-order index, pair rules) and
`ledger` moves balances and positions inside an order's transaction."""
