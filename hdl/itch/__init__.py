"""ITCH 5.0 message decoding into book operations, generated from proto.itch's field tables."""
