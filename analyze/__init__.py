"""Analyze: vectors from the store to clusters, maps and metrics. Never imports ingest."""
