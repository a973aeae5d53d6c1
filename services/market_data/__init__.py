"""Market data: `service.MarketDataService` runs the feed and serves tickers, candles,
books, pairs and the watchlist."""
