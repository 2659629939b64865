"""Ingest: read sources, embed what the store does not hold yet, write it to the store."""
