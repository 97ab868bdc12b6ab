"""Ethernet, IPv4 and UDP header parsing and filtering of feed frames."""
