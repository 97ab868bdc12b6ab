"""The host agent: strategy, pre-trade risk, order gateway, journal and control API."""
