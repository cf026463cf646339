"""Importers of real, public recommendation logs into the landing contract (docs/real_data.md)."""
