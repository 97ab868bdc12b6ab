"""RITCH's published ITCH 5.0 sample (tests/data/ritch/README.md) and the per-type counts published with it."""

from pathlib import Path

RITCH = Path(__file__).resolve().parent / "data" / "ritch" / "ex20101224.TEST_ITCH_50"
RITCH_COUNTS = {"S": 6, "R": 3, "H": 3, "A": 4997, "F": 3, "E": 198, "X": 45, "D": 1745, "U": 12, "P": 5000}
"""Messages per type as RITCH's own test suite asserts (all other types 0)."""
