"""results — the DuckDB store, read-only SQL, leaderboards and the HTML report."""
