"""MoldUDP64: per-message framing of a packet's payload, and sequencing / A-B line arbitration."""
