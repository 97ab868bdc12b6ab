"""Amaranth gateware of the card (the feed handler lands with the gateware issue)."""
