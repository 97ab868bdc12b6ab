"""The card's control and status registers, declared once as data.

`REGISTERS` is the register map the AXI4-Lite CSR bank (wirebook.hdl.csr.bank) is generated from, the host
driver reads and writes through, and docs/registers.md is rendered from (`python -m wirebook.proto.registers
> docs/registers.md`). This module is pure Python (no Amaranth): it runs on the PYNQ board's host side too.

Each register has a name, a byte offset (assigned in declaration order), a width in bits, an access kind
(`Access`: config, status, counter, command), a reset value, a description and a group; an array is declared
once with a count (and optional element labels, e.g. the drop reasons). `CONVENTIONS` states how the bank
behaves on the bus (word order, latched 64-bit reads, commands, SLVERR); the bank implements it, the
driver relies on it and the document opens with it.

    address("drops_b", "MAC")                   # byte offset of an array element, by label or index
    register("clock").from_words([low, high])   # the value of a 64-bit register read as two words
    register("session").to_words("SESSION001")  # the words to write, least significant first
    register("group").decode(value)             # {"address": ..., "port": ..., "valid": ...}
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from . import itch

__all__ = [
    "COMMAND",
    "CONFIG",
    "CONVENTIONS",
    "COUNTER",
    "COUNTER_RESET",
    "COUNTER_WIDTH",
    "DROP_REASONS",
    "LINES",
    "MAGIC",
    "N_GROUPS",
    "REGISTERS",
    "STATUS",
    "VERSION",
    "WORD_BITS",
    "WORD_BYTES",
    "Access",
    "BitField",
    "Register",
    "RegisterMap",
    "address",
    "markdown",
    "register",
    "text_value",
]

WORD_BYTES = 4
WORD_BITS = 8 * WORD_BYTES

MAGIC = "WBK1"  # read at offset 0: identifies a wirebook card
VERSION = 2  # of this register map: bump on any change of an offset, width or meaning
N_GROUPS = 8  # multicast (address, port) subscriptions
LINES = ("A", "B")  # the two redundant feed lines

# Why a frame or packet was dropped, one counter per reason and line. The gateware's drop-reason enum
# has these members with these values (index = value), checked by its tests.
DROP_REASONS: tuple[str, ...] = (  # in the order the feed line checks them; the gateware's DropReason enum
    "BAD_FRAMING",  # keep rules broken, or the frame ends before the bytes the next check reads
    "DISABLED",  # `enable` (or the line's enable) was low at the frame's first beat
    "MAC",  # destination MAC neither `local_mac` nor (with `accept_multicast`) 01:00:5e:0xxxxx
    "ETHERTYPE",  # neither IPv4 nor one 802.1Q tag in front of IPv4
    "IP_HEADER",  # version not 4, IHL < 5, or total length < IHL*4 + 8
    "IP_CHECKSUM",  # header checksum (over all IHL*4 bytes, options included) wrong
    "IP_FRAGMENT",  # more-fragments set or fragment offset not 0
    "IP_PROTOCOL",  # not UDP
    "IP_DESTINATION",  # destination address not a valid `group` entry's
    "UDP_PORT",  # destination port not the port of an entry with that address
    "UDP_LENGTH",  # UDP length not the IPv4 payload length, or too short for a MoldUDP64 header
    "MOLD_SESSION",  # session not `session` (with `check_session`)
    "MOLD_LENGTH",  # a heartbeat or end-of-session packet with bytes after its header
)


def text_value(text: str, length: int) -> int:
    """ASCII text as a register value: left-justified, space-padded to `length` bytes, first character in
    the least significant byte."""
    raw = text.encode("ascii")
    if len(raw) > length:
        raise ValueError(f"{text!r} is longer than {length} characters")
    return int.from_bytes(raw.ljust(length, b" "), "little")


class Access(enum.Enum):
    """What the host and the core do with a register."""

    CONFIG = "config"  # host reads and writes; drives the core
    STATUS = "status"  # host reads; driven by the core (or fixed at build time when `constant`)
    COUNTER = "counter"  # host reads; a 64-bit count kept in the bank, incremented by the core
    COMMAND = "command"  # host writes 1 to a bit: the core sees a one-cycle pulse on that bit

    @property
    def readable(self) -> bool:
        return self is not Access.COMMAND

    @property
    def writable(self) -> bool:
        return self in (Access.CONFIG, Access.COMMAND)


CONFIG, STATUS, COUNTER, COMMAND = Access.CONFIG, Access.STATUS, Access.COUNTER, Access.COMMAND

COUNTER_WIDTH = 64
COUNTER_RESET = "counter_reset"  # the command the bank itself obeys: clears every counter


@dataclass(frozen=True)
class BitField:
    """A named bit range of a register's value (bits lsb .. lsb + width - 1)."""

    name: str
    lsb: int
    width: int
    description: str = ""

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """One register, or an array of `count` identical ones.

    `offset` is assigned by `RegisterMap` (declaration order). `labels` name the elements of an array
    (e.g. the drop reasons); `fields` split the value into named bit ranges that tile it from bit 0;
    `amount_width` is the width of a counter's increment (1: an event strobe; wider: the counter adds an
    amount each cycle).
    """

    name: str
    access: Access
    width: int
    description: str
    group: str = ""
    reset: int = 0
    count: int | None = None
    labels: tuple[str, ...] = ()
    fields: tuple[BitField, ...] = ()
    text: bool = False
    constant: bool = False
    amount_width: int = 1
    offset: int | None = None

    # --- shape --------------------------------------------------------------------------------------

    @property
    def is_array(self) -> bool:
        return self.count is not None

    @property
    def elements(self) -> int:
        return 1 if self.count is None else self.count

    @property
    def words(self) -> int:
        """32-bit words per element."""
        return -(-self.width // WORD_BITS)

    @property
    def alignment(self) -> int:
        """Bytes the offset (and an array's stride) is a multiple of: 8 for a multi-word value, so that a
        64-bit host access reaches exactly its two words (the interconnect splits it low word first)."""
        return WORD_BYTES if self.words == 1 else 2 * WORD_BYTES

    @property
    def stride(self) -> int:
        """Bytes from one element to the next."""
        return -(-self.words * WORD_BYTES // self.alignment) * self.alignment

    @property
    def size(self) -> int:
        """Bytes the whole register (every element) takes."""
        return self.stride * (self.elements - 1) + self.words * WORD_BYTES

    @property
    def end(self) -> int:
        return self._offset() + self.size

    @property
    def latched(self) -> bool:
        """Reading word 0 latches the upper words (multi-word values the core changes under the host)."""
        return self.words > 1 and (self.access is COUNTER or (self.access is STATUS and not self.constant))

    def _offset(self) -> int:
        if self.offset is None:
            raise ValueError(f"register {self.name!r} has no offset: it is not part of a RegisterMap")
        return self.offset

    # --- addresses ----------------------------------------------------------------------------------

    def index_of(self, index: int | str | None) -> int:
        """The element number of `index` (an int, or one of `labels`); None for a scalar register."""
        if index is None:
            if self.is_array:
                raise IndexError(f"register {self.name!r} is an array of {self.count}: give an index")
            return 0
        if not self.is_array:
            raise IndexError(f"register {self.name!r} is not an array: no index {index!r}")
        if isinstance(index, str):
            if index not in self.labels:
                raise KeyError(f"register {self.name!r} has no element {index!r} (elements: {', '.join(self.labels)})")
            return self.labels.index(index)
        if not 0 <= index < self.elements:
            raise IndexError(f"register {self.name!r}: index {index} out of range 0..{self.elements - 1}")
        return index

    def address(self, index: int | str | None = None) -> int:
        """Byte address of word 0 (the least significant word) of the register or of element `index`."""
        return self._offset() + self.index_of(index) * self.stride

    def element_name(self, index: int) -> str:
        if not self.is_array:
            return self.name
        label = f" {self.labels[index]}" if self.labels else ""
        return f"{self.name}[{index}]{label}"

    # --- values -------------------------------------------------------------------------------------

    @property
    def max_value(self) -> int:
        return (1 << self.width) - 1

    def encode(self, value: int | str | Mapping[str, int]) -> int:
        """A register value as an integer: text for `text` registers, {field: value} for registers with
        fields (fields not given are 0), or the integer itself."""
        if isinstance(value, str):
            if not self.text:
                raise TypeError(f"register {self.name!r} is not text; got {value!r}")
            try:
                return text_value(value, self.width // 8)
            except ValueError as e:
                raise ValueError(f"register {self.name!r}: {e}") from None
        if isinstance(value, Mapping):
            if not self.fields:
                raise TypeError(f"register {self.name!r} has no fields; got {dict(value)!r}")
            by_name = {f.name: f for f in self.fields}
            unknown = set(value) - set(by_name)
            if unknown:
                raise KeyError(f"register {self.name!r} has no field(s) {sorted(unknown)} (fields: {list(by_name)})")
            out = 0
            for name, v in value.items():
                f = by_name[name]
                if not 0 <= int(v) < 1 << f.width:
                    raise ValueError(f"register {self.name!r}: field {name} = {v} does not fit {f.width} bits")
                out |= int(v) << f.lsb
            return out
        value = int(value)
        if not 0 <= value <= self.max_value:
            raise ValueError(f"register {self.name!r}: {value} does not fit {self.width} bits")
        return value

    def decode(self, value: int) -> int | str | dict[str, int]:
        """The inverse of `encode`: text, {field: value}, or the integer."""
        value = int(value)
        if not 0 <= value <= self.max_value:
            raise ValueError(f"register {self.name!r}: {value} does not fit {self.width} bits")
        if self.text:
            return value.to_bytes(self.width // 8, "little").decode("ascii", errors="replace").rstrip(" \0")
        if self.fields:
            return {f.name: (value >> f.lsb) & ((1 << f.width) - 1) for f in self.fields}
        return value

    def to_words(self, value: int | str | Mapping[str, int]) -> tuple[int, ...]:
        """The 32-bit words of a value, least significant (lowest address) first."""
        value = self.encode(value)
        return tuple((value >> (WORD_BITS * k)) & 0xFFFF_FFFF for k in range(self.words))

    def from_words(self, words: Sequence[int]) -> int:
        """The value read as `words` (least significant first); bits above `width` are ignored."""
        if len(words) != self.words:
            raise ValueError(f"register {self.name!r} is {self.words} word(s), got {len(words)}")
        value = 0
        for k, word in enumerate(words):
            if not 0 <= word <= 0xFFFF_FFFF:
                raise ValueError(f"register {self.name!r}: word {k} = {word} is not a 32-bit value")
            value |= word << (WORD_BITS * k)
        return value & self.max_value

    # --- declaration checks -------------------------------------------------------------------------

    def check(self) -> None:
        where = f"register {self.name!r}"
        if not self.name.isidentifier() or not self.name.islower() or self.name.startswith("_"):
            raise ValueError(f"{where}: names are lower-case Python identifiers (they name gateware ports)")
        if self.width <= 0:
            raise ValueError(f"{where}: width {self.width}")
        if self.count is not None and self.count <= 0:
            raise ValueError(f"{where}: array count {self.count}")
        if self.labels and len(self.labels) != self.elements:
            raise ValueError(f"{where}: {len(self.labels)} labels for {self.elements} elements")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{where}: labels repeat")
        if not 0 <= self.reset <= self.max_value:
            raise ValueError(f"{where}: reset {self.reset:#x} does not fit {self.width} bits")
        if self.text and self.width % 8:
            raise ValueError(f"{where}: a text register is whole bytes, got {self.width} bits")
        if self.fields:
            at = 0
            for f in self.fields:
                if f.lsb != at or f.width <= 0:
                    raise ValueError(f"{where}: field {f.name!r} at bit {f.lsb}, expected {at} (fields tile the value)")
                at += f.width
            if at != self.width:
                raise ValueError(f"{where}: fields cover {at} bits of {self.width}")
            if len({f.name for f in self.fields}) != len(self.fields):
                raise ValueError(f"{where}: field names repeat")
        if self.constant and self.access is not STATUS:
            raise ValueError(f"{where}: only status registers are constant")
        if self.access is COUNTER:
            if self.width != COUNTER_WIDTH or self.reset:
                raise ValueError(f"{where}: counters are {COUNTER_WIDTH} bits and reset to 0")
            if not 1 <= self.amount_width <= COUNTER_WIDTH:
                raise ValueError(f"{where}: amount width {self.amount_width}")
        elif self.amount_width != 1:
            raise ValueError(f"{where}: only counters have an amount width")
        if self.access is COMMAND and (self.width > WORD_BITS or self.reset):
            raise ValueError(f"{where}: a command is at most one word of strobes and resets to 0")


class RegisterMap:
    """An ordered set of registers, offsets assigned in declaration order (multi-word values 8-byte aligned)."""

    def __init__(self, registers: Iterable[Register], *, title: str = "register map") -> None:
        self.title = title
        placed = []
        at = 0
        for r in registers:
            r.check()
            at = -(-at // r.alignment) * r.alignment
            placed.append(dataclasses.replace(r, offset=at))
            at += r.size
        self.registers: tuple[Register, ...] = tuple(placed)
        self.by_name: dict[str, Register] = {}
        for r in self.registers:
            if r.name in self.by_name:
                raise ValueError(f"{title}: register {r.name!r} declared twice")
            self.by_name[r.name] = r
        self.size = at
        self._words: dict[int, tuple[Register, int, int]] = {}
        for r in self.registers:
            for i in range(r.elements):
                for k in range(r.words):
                    self._words[(r.address(i if r.is_array else None) // WORD_BYTES) + k] = (r, i, k)

    def __iter__(self) -> Iterator[Register]:
        return iter(self.registers)

    def __len__(self) -> int:
        return len(self.registers)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __getitem__(self, name: str) -> Register:
        try:
            return self.by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.by_name, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise KeyError(f"no register {name!r} in the {self.title}{hint}") from None

    @property
    def address_width(self) -> int:
        """Byte-address bits that cover the map (at least 12: a 4 KiB AXI window)."""
        return max(12, (self.size - 1).bit_length())

    def address(self, name: str, index: int | str | None = None) -> int:
        """Byte address of register `name` (element `index`, an int or a label, for an array)."""
        return self[name].address(index)

    def at(self, address: int) -> tuple[Register, int, int]:
        """(register, element, word) at a byte address; KeyError when nothing is mapped there."""
        if address % WORD_BYTES:
            raise KeyError(f"address {address:#x} is not word aligned")
        try:
            return self._words[address // WORD_BYTES]
        except KeyError:
            raise KeyError(f"nothing mapped at {address:#x} (the map ends at {self.size:#x})") from None

    def cells(self) -> Iterator[tuple[int, Register, int, int]]:
        """Every mapped word in address order: (byte address, register, element, word of the element)."""
        for word_address in sorted(self._words):
            yield (word_address * WORD_BYTES, *self._words[word_address])

    def of(self, access: Access) -> tuple[Register, ...]:
        return tuple(r for r in self.registers if r.access is access)

    def groups(self) -> dict[str, tuple[Register, ...]]:
        """Registers by group, groups in order of first appearance."""
        out: dict[str, list[Register]] = {}
        for r in self.registers:
            out.setdefault(r.group, []).append(r)
        return {g: tuple(rs) for g, rs in out.items()}

    # --- document -----------------------------------------------------------------------------------

    def markdown(self) -> str:
        """The register document (docs/registers.md)."""
        width = max(3, (self.size - 1).bit_length() + 3) // 4
        lines = [
            f"# wirebook {self.title}",
            "",
            "Generated from `proto/registers.py` by `python -m wirebook.proto.registers > docs/registers.md`;",
            "do not edit (a test fails when this file is stale).",
            "",
            f"Map version {VERSION}: {len(self._words)} 32-bit words in {self.size:#x} bytes behind an AXI4-Lite",
            f"target with {self.address_width} address bits.",
            "",
            "## Conventions",
            "",
            *CONVENTIONS,
            "",
        ]
        for group, registers in self.groups().items():
            lines += [f"## {group}", "", "| Offset | Register | Access | Bits | Reset | Description |"]
            lines += ["|---|---|---|---|---|---|"]
            for r in registers:
                for i in range(r.elements):
                    offset = r.address(i if r.is_array else None)
                    name = f"`{r.name}`" if not r.is_array else f"`{r.name}[{i}]`"
                    if r.labels:
                        name += f" {r.labels[i]}"
                    description = r.description if i == 0 or not r.is_array else "as above"
                    if i == 0 and r.fields:
                        parts = [
                            f"{f.name} [{f.msb}:{f.lsb}]" if f.width > 1 else f"{f.name} [{f.lsb}]" for f in r.fields
                        ]
                        description += " Fields: " + ", ".join(parts) + "."
                    if i == 0 and r.access is COUNTER and r.amount_width > 1:
                        description += f" Adds a {r.amount_width}-bit amount, not 1."
                    lines.append(
                        f"| 0x{offset:0{width}x} | {name} | {_access_text(r)} | {r.width} | {_reset_text(r)} "
                        f"| {description} |"
                    )
            lines.append("")
        return "\n".join(lines)


CONVENTIONS = (
    "- Offsets are byte addresses of 32-bit words, assigned in declaration order. A value wider than 32 bits",
    "  takes consecutive words, least significant word first, from an 8-byte aligned offset (so a 64-bit host",
    "  access split by the interconnect reaches exactly its two words). Array elements follow each other.",
    "- `config`: read/write; each word takes effect when written, `wstrb` selects its bytes. Change a multi-word",
    "  value while the block it drives is disabled, or stage it and apply it with its command.",
    "- `status`: read-only, from the core (`constant`: fixed when the gateware is built).",
    "- `counter`: read-only 64-bit event count; every counter clears on `counter_reset`.",
    "- `command`: write-only; writing 1 to a bit pulses it for one cycle. Reads return 0.",
    "- Reading word 0 of a multi-word counter or live status value latches its upper words; the next read of",
    "  an upper word returns the latched value. The latch is shared: read low word then high word with no",
    "  other read between them.",
    "- An unmapped address or a write to a read-only register answers SLVERR and changes nothing.",
    "- Text is ASCII, left-justified and space-padded, first character in the least significant byte.",
)


def _access_text(r: Register) -> str:
    return f"{r.access.value} (constant)" if r.constant else r.access.value


def _reset_text(r: Register) -> str:
    if r.access in (COUNTER, COMMAND) or (r.constant and not r.reset):
        return "-" if r.access is not COUNTER else "0"
    if r.text and r.reset:
        return f"'{r.decode(r.reset)}'"
    return f"{r.reset:#x}" if r.reset > 9 else str(r.reset)


# --- the declaration ----------------------------------------------------------------------------------


def _in_group(group: str, registers: Iterable[Register]) -> list[Register]:
    return [dataclasses.replace(r, group=group) for r in registers]


def _per_line(line: str) -> list[Register]:
    """The counters each feed line keeps (suffix _a / _b)."""
    s = f"_{line.lower()}"
    return _in_group(
        f"line {line} counters",
        [
            Register(f"frames{s}", COUNTER, 64, f"Ethernet frames received on line {line}."),
            Register(f"packets_accepted{s}", COUNTER, 64, "MoldUDP64 packets that passed every check."),
            Register(
                f"drops{s}",
                COUNTER,
                64,
                "Frames or packets dropped, one counter per reason (DROP_REASONS).",
                count=len(DROP_REASONS),
                labels=DROP_REASONS,
            ),
            Register(f"heartbeats{s}", COUNTER, 64, "MoldUDP64 heartbeats (message count 0)."),
            Register(f"end_of_session{s}", COUNTER, 64, "MoldUDP64 end-of-session packets (message count 0xFFFF)."),
            Register(f"truncated{s}", COUNTER, 64, "Packets whose message blocks run past the UDP payload."),
            Register(
                f"bad_message_length{s}", COUNTER, 64, "Message blocks with length 0 or over the longest ITCH message."
            ),
            Register(f"messages{s}", COUNTER, 64, "Messages carried by accepted packets."),
        ],
    )


def _declaration() -> list[Register]:
    identity = _in_group(
        "identity",
        [
            Register(
                "magic",
                STATUS,
                32,
                f"'{MAGIC}': a wirebook card.",
                reset=text_value(MAGIC, 4),
                text=True,
                constant=True,
            ),
            Register("version", STATUS, 32, "Version of this register map.", reset=VERSION, constant=True),
            Register(
                "build_id", STATUS, 32, "Hash of the gateware sources, computed when the top is built.", constant=True
            ),
            Register("data_width", STATUS, 32, "Width of the frame datapath in bits.", constant=True),
            Register("n_instruments", STATUS, 32, "Instrument-table entries (subscribed instruments).", constant=True),
            Register("n_orders", STATUS, 32, "Order-table capacity.", constant=True),
            Register("n_levels", STATUS, 32, "Price levels kept per side and instrument.", constant=True),
            Register(
                "n_groups", STATUS, 32, "Multicast subscriptions (`group` elements).", reset=N_GROUPS, constant=True
            ),
            Register(
                "n_lines",
                STATUS,
                32,
                "Feed lines built: 2 (A and B), or 1 (A only: a board with one feed port).",
                reset=len(LINES),
                constant=True,
            ),
        ],
    )
    control = _in_group(
        "control",
        [
            Register("enable", CONFIG, 1, "1: the card receives; 0: every frame is dropped (DISABLED)."),
            Register("line_enable", CONFIG, 1, "1: receive on this line.", reset=1, count=len(LINES), labels=LINES),
            Register(
                "local_mac",
                CONFIG,
                48,
                "Unicast MAC address the card accepts (bits [47:40] are the first byte on the wire).",
            ),
            Register("accept_multicast", CONFIG, 1, "1: accept IPv4 multicast MAC addresses (01:00:5e:...).", reset=1),
            Register(
                "local_ip", CONFIG, 32, "Unicast IPv4 address the card accepts (bits [31:24] are the first byte)."
            ),
            Register(
                "group",
                CONFIG,
                49,
                "Multicast subscription: packets to (address, port) are accepted when valid. Word 1 holds valid:"
                " write the address word first and valid last.",
                count=N_GROUPS,
                fields=(
                    BitField("address", 0, 32, "IPv4 destination address"),
                    BitField("port", 32, 16, "UDP destination port"),
                    BitField("valid", 48, 1, "subscription in use"),
                ),
            ),
            Register("session", CONFIG, 80, "MoldUDP64 session (10 ASCII characters) to accept.", text=True),
            Register("check_session", CONFIG, 1, "1: drop packets of any other session (MOLD_SESSION)."),
        ],
    )
    commands = _in_group(
        "commands",
        [
            Register(COUNTER_RESET, COMMAND, 1, "Write 1: clear every counter."),
            Register(
                "book_clear", COMMAND, 1, "Write 1: empty the order and level tables (status `clearing` while it runs)."
            ),
            Register(
                "sequence_reset", COMMAND, 1, "Write 1: forget the expected sequence number (the next packet sets it)."
            ),
            Register("expected_value", CONFIG, 64, "Sequence number `expected_set` loads."),
            Register("expected_set", COMMAND, 1, "Write 1: the expected sequence number becomes `expected_value`."),
            Register("clock_value", CONFIG, 64, "Nanoseconds `clock_set` loads into the card clock."),
            Register("clock_set", COMMAND, 1, "Write 1: the card clock becomes `clock_value`."),
            Register(
                "instrument_locate", CONFIG, 16, "Stock locate of the instrument-table entry `instrument_write` writes."
            ),
            Register("instrument_slot", CONFIG, 16, "Book slot of that entry (below `n_instruments`)."),
            Register("instrument_valid", CONFIG, 1, "1: subscribe the locate to the slot; 0: unsubscribe it."),
            Register("instrument_write", COMMAND, 1, "Write 1: write the entry (locate -> slot, valid)."),
        ],
    )
    status = _in_group(
        "status",
        [
            Register("clock", STATUS, 64, "Card clock, nanoseconds (live)."),
            Register("expected_sequence", STATUS, 64, "Sequence number of the next message the merger expects."),
            Register("expected_known", STATUS, 1, "1: `expected_sequence` is set (a packet or `expected_set`)."),
            Register("last_gap_first", STATUS, 64, "First missing sequence number of the most recent gap."),
            Register("last_gap_count", STATUS, 64, "Messages missing in the most recent gap."),
            Register("orders_live", STATUS, 32, "Orders in the order table."),
            Register("clearing", STATUS, 1, "1: `book_clear` is running."),
            Register("end_of_session_seen", STATUS, 1, "1: a MoldUDP64 end-of-session arrived."),
            Register(
                "last_system_event", STATUS, 8, "Event code of the most recent System Event (S) message.", text=True
            ),
            Register(
                "last_directory_locate", STATUS, 16, "Stock locate of the most recent Stock Directory (R) message."
            ),
            Register("last_directory_stock", STATUS, 64, "Stock symbol of that message.", text=True),
        ],
    )
    merged = _in_group(
        "merged counters",
        [
            Register("messages_accepted", COUNTER, 64, "Messages the A/B merger passed on (first copy of each)."),
            Register(
                "duplicates",
                COUNTER,
                64,
                "Messages already seen (the other line's copy, or a replay).",
                amount_width=2,  # both lines' copies can be dropped in one cycle
            ),
            Register("gaps", COUNTER, 64, "Gaps in the sequence numbers."),
            Register(
                "missing_messages", COUNTER, 64, "Messages missing, the sum of every gap's size.", amount_width=64
            ),
        ],
    )
    decoder = _in_group(
        "decoder counters",
        [
            Register(
                "messages_by_type",
                COUNTER,
                64,
                "ITCH messages decoded, by type letter (itch.TYPES).",
                count=len(itch.TYPES),
                labels=itch.TYPES,
            ),
            Register("unknown_type", COUNTER, 64, "Messages with a type letter ITCH 5.0 does not define."),
            Register("bad_length", COUNTER, 64, "Messages whose length is not their type's."),
            Register("bad_field", COUNTER, 64, "Messages with a field value out of its domain (e.g. side not B/S)."),
        ],
    )
    book = _in_group(
        "book counters",
        [
            Register("unsubscribed", COUNTER, 64, "Book messages for a locate not in the instrument table."),
            Register(
                "unknown_order", COUNTER, 64, "Executes, cancels, deletes or replaces of an order not in the table."
            ),
            Register("order_overflow", COUNTER, 64, "Adds refused: the order table is full."),
            Register("level_eviction", COUNTER, 64, "Price levels pushed out of the kept depth."),
            Register("locate_mismatch", COUNTER, 64, "Messages whose locate is not their order's."),
            Register("over_execution", COUNTER, 64, "Executes or cancels of more shares than the order has."),
            Register("duplicate_order", COUNTER, 64, "Adds of an order reference already in the table."),
            Register("bbo_records", COUNTER, 64, "BBO records emitted."),
        ],
    )
    lines = [r for line in LINES for r in _per_line(line)]
    return identity + control + commands + status + lines + merged + decoder + book


REGISTERS = RegisterMap(_declaration(), title="register map")


def register(name: str) -> Register:
    """The register called `name`; KeyError naming it when there is none."""
    return REGISTERS[name]


def address(name: str, index: int | str | None = None) -> int:
    """Byte address of `name` (element `index`, an int or a label such as "MAC", for an array)."""
    return REGISTERS.address(name, index)


def markdown() -> str:
    """docs/registers.md."""
    return REGISTERS.markdown()


if __name__ == "__main__":
    sys.stdout.write(markdown())
