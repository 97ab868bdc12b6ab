"""Simulation: market generator, feed packetiser, exchange simulator and test-bench helpers."""
