"""Typed errors for bad wire bytes.

Every decoder in wirebook.proto raises one of these instead of returning a half-parsed value. The message
always says what was being read, at which byte offset, and what was expected, so a bad day file or a bad
packet can be located with a hex dump.
"""

from __future__ import annotations


class WireError(ValueError):
    """Bytes that do not form a valid message.

    `what` names the thing being decoded (e.g. "ITCH 'A' add_order"), `offset` is the byte offset of the
    problem in the input (file offset for files, packet offset for packets), `expected` says what a valid
    input would have had there.
    """

    def __init__(self, what: str, offset: int, expected: str, got: str | None = None) -> None:
        self.what = what
        self.offset = offset
        self.expected = expected
        self.got = got
        text = f"{what} at byte offset {offset}: expected {expected}"
        if got is not None:
            text += f", got {got}"
        super().__init__(text)


class TruncatedError(WireError):
    """The input ended before the message did."""


class MalformedError(WireError):
    """The bytes are all there but do not follow the format (unknown type, inconsistent length, ...)."""
