"""Everything that does I/O: log backends, cache, SQL, Zerodha. Services wire them in."""
