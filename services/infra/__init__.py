"""Infrastructure every domain uses: the database, Redis, the cache, the event bus and
the WebSocket hub."""
