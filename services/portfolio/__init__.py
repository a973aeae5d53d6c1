"""Portfolio: `service.PortfolioService` values accounts, snapshots them and computes
performance; `rebalance` plans the orders that move holdings to target weights."""
