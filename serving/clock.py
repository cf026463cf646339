"""The service's clock: data/clock.py (shared with the live mode's simulated users)."""

from data.clock import Clock

__all__ = ["Clock"]
