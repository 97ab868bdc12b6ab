"""A deterministic synthetic NASDAQ market: one TotalView-ITCH 5.0 trading day, compressed to a message budget.

`generate(symbols, messages, seed)` yields exactly `messages` ITCH 5.0 messages (bytes, no length prefix);
`write_itch(path, ...)` writes them in the ITCH file format and returns summary counts. The same arguments
always give the same bytes: every random draw comes from numpy Generators spawned from `seed`, the universe of
tickers from a fixed generator, and no state depends on hashing, wall time or dict order of unordered keys.

Model of the market
-------------------
Universe. `symbols` tickers (a curated list of familiar Nasdaq / NYSE / Arca names first, then invented
ones), stock locates 1..N in alphabetical order as Nasdaq assigns them. Each has its own price level
(log-uniform $5-$500, tick $0.01 = 100 price units, round lot 100) and a share of the order flow drawn from a
Zipf law over a random ranking, so a few names carry most of the traffic.

Day. Timestamps are nanoseconds since midnight, non-decreasing, all within 04:00-20:00:
  04:00  S 'O', stock directory (R) and trading action (H 'T') for every listed symbol, Reg SHO (Y), market
         maker positions (L), MWCB decline levels (V), an IPO quoting period update (K), S 'S';
         pre-market order flow (a few per cent of the flow).
  09:28  opening NOII (I, cross type 'O') every 5 s per symbol;
  09:30  S 'Q', the opening cross per symbol (resting orders at the cross price executed with non-printable C,
         then the cross trade Q 'O'), then the opening burst: a few per cent of the whole day's flow in two
         seconds, mostly adds that build the books.
  09:30-16:00  continuous trading, intensity U-shaped over the day. The IPO symbol (listed with the IPO flag
         and halted 'IPO1' since 04:00) gets its DLCR price discovery (O), a halt-cross NOII and the IPO cross
         Q 'H' at 11:10, then trades. From 11:20 on, halts in disjoint windows: LULD pauses (H 'H' 'LUDP',
         an auction collar J, NOII 'H', a halt cross Q 'H', H 'T') and operational halts (h 'H' ... h 'T').
         Retail price improvement (N), a Reg SHO activation (Y '1'), broken trades (B) of earlier executions,
         an MWCB level-1 breach (W) at 15:40 (after 15:25, so it halts nothing).
  15:50  closing NOII (cross type 'C') every 10 s; 16:00 S 'M' and the closing crosses (C, Q 'C');
  16:00-20:00  post-market flow; 20:00 S 'E', S 'C'.

Flow timing. Messages come in bursts, as on a real feed: most follow the previous one within microseconds
(one event making several messages), with ordinary exponential gaps between bursts.

Order flow. Arrivals pick an instrument by its Zipf weight (a halted one is skipped) and are, by phase:
a passive limit order (A, some F with an MPID), a marketable order, or a non-displayed execution (P, at
the midpoint, order reference 0). A passive price is drawn near the touch: joining the best or a geometric
number of ticks behind it, sometimes improving inside the spread (more often when the spread is wider than the
instrument's usual), anchored on the opposite best or the instrument's fair value when a side is empty.
A marketable order is never added to the book: it is played as executions (E, a few C with a printable
price) against the opposite best level in FIFO order, sometimes sweeping the next level, sometimes posting
its rest at the price it emptied. Which side aggresses is biased towards a per-instrument fair value that
follows a random walk, so prices drift the way the fair value does. Every resting order gets a fate when it
is added: most are deleted (D) a few of the instrument's arrivals later, some partially canceled (X) then
deleted, some replaced (U: new reference, price and size near the touch, losing priority), the rest live long
and wait to be executed or deleted. Fates are kept in a heap keyed by position in the flow.

Invariants kept (the golden model and the third-party replays refuse or disagree on anything else): order
references are unique and increasing, match numbers unique and increasing; E/C/X/D/U refer to a live order of
the same stock locate and never take more than its remaining shares, and an order executed or canceled to zero
just leaves the book; the book of an instrument never crosses or locks; while an instrument is halted (H not
'T', or an operational halt) its book only sees X and D (a due replace becomes a delete), and no cross executes
against it.

Budget. The scripted messages (directory, crosses, NOII, halts, ...) are planned first and the flow fills the
rest exactly. With fewer than about 8 messages per symbol only the first messages // 8 symbols (by locate)
are listed and used; the optional scripted messages take at most 12 % of what is left after the directory,
in priority order, so every one of the 23 message types occurs once `messages` is about 2000 or more for a
few dozen symbols (the IPO's K and O need at least two listed symbols). Below 6 messages only system events are
sent, S 'C' (end of messages) always among them.
"""

from __future__ import annotations

import heapq
import os
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..proto import itch
from ..proto.itch_file import ItchWriter

__all__ = ["Instrument", "generate", "universe", "write_itch"]

TICK = 100
"""$0.01 in ITCH Price(4) units."""
_P_BURST = 0.8
"""Share of flow messages that follow the previous one within a burst (mean burst: 5 messages)."""
_BURST_GAP = 2e-6
"""A gap inside a burst, relative to an ordinary gap (about a microsecond in continuous trading)."""
ROUND_LOT = 100


def _clock(hours: int, minutes: int = 0, seconds: int = 0, ns: int = 0) -> int:
    return ((hours * 60 + minutes) * 60 + seconds) * 1_000_000_000 + ns


_SECOND = 1_000_000_000
_MINUTE = 60 * _SECOND
START = _clock(4)
"""S 'O' and the directory; the earliest timestamp."""
OPEN = _clock(9, 30)
CLOSE = _clock(16)
END = _clock(20)
"""S 'E' and S 'C'; the latest timestamp."""

# Flow phases, as (first ns, end ns, share of the flow, phase). The regular session is cut in half hours whose
# shares make the intraday U shape.
_PRE, _BURST, _REGULAR, _POST = range(4)
_U_SHAPE = (2.2, 1.6, 1.25, 1.05, 0.9, 0.8, 0.75, 0.8, 0.9, 1.0, 1.2, 1.55, 2.4)
_PHASES: tuple[tuple[int, int, float, int], ...] = (
    (_clock(4, 0, 1), OPEN, 0.025, _PRE),
    (_clock(9, 30, 0, 1_000_000), _clock(9, 30, 2), 0.025, _BURST),
    *(
        (
            max(_clock(9, 30, 2), OPEN + j * 30 * _MINUTE),
            OPEN + (j + 1) * 30 * _MINUTE,
            0.91 * w / sum(_U_SHAPE),
            _REGULAR,
        )
        for j, w in enumerate(_U_SHAPE)
    ),
    (_clock(16, 0, 1), _clock(19, 59, 59), 0.04, _POST),
)

# Arrival mix per phase: P(passive add), P(marketable); the rest are non-displayed executions (P).
_MIX = {_PRE: (0.88, 0.08), _BURST: (0.96, 0.03), _REGULAR: (0.885, 0.085), _POST: (0.89, 0.08)}
_P_MPID = 0.05  # adds that carry an MPID (F)
_P_PRINTABLE_C = 0.04  # continuous executions reported as C (with a printable price) instead of E
_P_SWEEP = 0.3  # a marketable order larger than the best level goes on to the next level
_P_POST_REST = 0.25  # ... or posts its rest at the emptied price
_P_IMPROVE, _P_IMPROVE_WIDE = 0.12, 0.6  # new orders inside the spread (normal / wider than usual spread)
# Fates of resting orders, their cumulative probabilities (the rest: long-lived, then deleted unless executed), and
# lifetimes in arrivals of the order's own instrument.
_DELETE, _CANCEL, _REPLACE = range(3)
_FATE_DELETE, _FATE_CANCEL, _FATE_REPLACE = 0.60, 0.64, 0.76
_LIFE_SHORT, _LIFE_LONG = 3.0, 150.0
_ARRIVALS_PER_MESSAGE = 0.5  # how many flow messages are arrivals (the rest are their fates): scales lifetimes
_DAILY_VOLATILITY = 0.02
_ZIPF = 1.1

_MPIDS = ("GSCO", "MSCO", "NITE", "VIRT", "CDEL", "UBSS", "JPMS", "SBSH", "CITD", "TMBR", "JANE", "HRTF")
_OPEN_NOII = tuple(_clock(9, 28) + 5 * _SECOND * j for j in range(24))
_CLOSE_NOII = tuple(_clock(15, 50) + 10 * _SECOND * j for j in range(60))
_HALT_SLOTS = tuple(_clock(11, 20) + 7 * _MINUTE * j for j in range(35))
_IPO_RELEASE = _clock(11, 0)
_IPO_CROSS = _clock(11, 10)
_BREAK_TIMES = tuple(_clock(10) + 17 * _MINUTE * j + 7 * _SECOND for j in range(20))
_BLOCK = 1 << 15  # messages per encoded block

_NASDAQ_NAMES = (
    "AAPL MSFT AMZN NVDA GOOGL META TSLA AVGO COST PEP ADBE CSCO NFLX AMD INTC QCOM TXN AMGN HON INTU SBUX GILD "
    "MDLZ ISRG BKNG ADP VRTX REGN PYPL MU LRCX ADI PANW KLAC SNPS CDNS MRVL ORLY CTAS FTNT"
)
_NYSE_NAMES = "IBM KO JPM XOM GE BAC WMT DIS T V"
# name, market category, issue classification, ETP leverage (0: not an ETP), inverse
_CURATED = (
    *((t, "Q", "C", 0, False) for t in _NASDAQ_NAMES.split()),
    ("ASML", "Q", "A", 0, False),
    ("QQQ", "G", "Q", 1, False),
    ("TQQQ", "G", "Q", 3, False),
    ("SQQQ", "G", "Q", 3, True),
    *((t, "N", "C", 0, False) for t in _NYSE_NAMES.split()),
    ("SPY", "P", "Q", 1, False),
    ("IWM", "P", "Q", 1, False),
    ("GLD", "P", "Q", 1, False),
    ("CBOE", "Z", "C", 0, False),
)
_CURATED_NAMES = frozenset(row[0] for row in _CURATED)


def _on_tick(price: float) -> int:
    return max(TICK, round(price / TICK) * TICK)


@dataclass(frozen=True)
class Instrument:
    """One listed security: its stock directory data and the parameters of its order flow."""

    locate: int
    stock: str
    market_category: str  # Q/G/S Nasdaq tiers, N NYSE, A NYSE American, P NYSE Arca, Z Cboe BZX, V IEX
    issue_classification: str
    etp_leverage: int  # 0 when not an exchange-traded product
    inverse: bool
    price: int  # reference price at the start of the day, ITCH price units (a multiple of TICK)
    activity: float  # share of the order flow; sums to 1 over the universe

    @property
    def nasdaq_listed(self) -> bool:
        return self.market_category in "QGS"


def universe(symbols: int, seed: int) -> list[Instrument]:
    """The `symbols` instruments of a day, by stock locate. Names do not depend on `seed`; prices and
    activity do."""
    if symbols < 1:
        raise ValueError(f"symbols must be at least 1, got {symbols}")
    if symbols > 65535:
        raise ValueError(f"symbols must fit a 2-byte stock locate (at most 65535), got {symbols}")
    names = list(_CURATED[:symbols])
    taken = {row[0] for row in names}
    namer = np.random.Generator(np.random.PCG64(0x5EED_1CE5))
    letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
    while len(names) < symbols:
        category = "QGSNAPZV"[namer.choice(8, p=(0.25, 0.2, 0.25, 0.15, 0.04, 0.07, 0.03, 0.01))]
        width = 4 if category in "QGS" else int(namer.integers(1, 4))
        name = letters[namer.integers(0, 26, width)].tobytes().decode("ascii")
        if name not in taken:
            taken.add(name)
            names.append((name, category, "C", 0, False))
    names.sort()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1])))
    dollars = np.exp(rng.uniform(np.log(5.0), np.log(500.0), symbols))
    rank = rng.permutation(symbols)
    weight = 1.0 / (rank + 1.0) ** _ZIPF
    weight /= weight.sum()
    return [
        Instrument(locate + 1, name, category, cls, lev, inv, round(d * 100) * TICK, float(w))
        for locate, ((name, category, cls, lev, inv), d, w) in enumerate(zip(names, dollars, weight))
    ]


def generate(symbols: int, messages: int, seed: int) -> Iterator[bytes]:
    """Exactly `messages` ITCH 5.0 messages of one synthetic day (see the module docstring), each as bytes."""
    if messages < 0:
        raise ValueError(f"messages must be at least 0, got {messages}")
    session = _Session(universe(symbols, seed), messages, seed)
    return _messages(session)


def write_itch(path: str | os.PathLike, symbols: int, messages: int, seed: int) -> dict[str, Any]:
    """Write `generate(symbols, messages, seed)` to `path` in the ITCH file format.

    Returns {"messages", "bytes", "symbols" (listed in the stock directory), "first_timestamp",
    "last_timestamp", "types": {type letter: count, every ITCH 5.0 type}}.
    """
    counts = [0] * 256
    first = message = None
    with ItchWriter(path) as writer:
        write = writer.write
        for message in generate(symbols, messages, seed):
            write(message)
            counts[message[0]] += 1
            if first is None:
                first = message
    return {
        "messages": writer.count,
        "bytes": sum(n * (2 + int(itch.LENGTH_BY_TYPE_BYTE[tb])) for tb, n in enumerate(counts)),
        "symbols": counts[ord("R")],
        "first_timestamp": None if first is None else _timestamp(first),
        "last_timestamp": None if message is None else _timestamp(message),
        "types": {t: counts[ord(t)] for t in itch.TYPES},
    }


def _timestamp(message: bytes) -> int:
    return itch.decode(message).timestamp


# --- encoding: the simulation appends native records per type; blocks go through Layout.encode_array ------------
# (Layout.pack costs ~4.5 us a message, more than the whole simulation; encode_array is the same field table,
# vectorised.)

_LAYOUTS = {ord(t): layout for t, layout in itch.MESSAGES.items()}
_NATIVE = {tb: layout.native_dtype for tb, layout in _LAYOUTS.items()}
_OFFSETS = {tb: np.arange(layout.length) for tb, layout in _LAYOUTS.items()}
_LENGTHS = itch.LENGTH_BY_TYPE_BYTE.astype(np.int64)


def _encode(seq: bytearray, rows: dict[int, list]) -> tuple[bytes, list[int], list[int]]:
    """One block: the wire bytes of all its messages in order, and where each starts and ends."""
    types = np.frombuffer(bytes(seq), np.uint8)
    lengths = _LENGTHS[types]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), np.uint8)
    for tb, records in rows.items():
        if records:
            layout = _LAYOUTS[tb]
            packed = layout.encode_array(np.array(records, dtype=_NATIVE[tb]))
            out[starts[types == tb][:, None] + _OFFSETS[tb]] = packed
    return out.tobytes(), starts.tolist(), ends.tolist()


def _messages(session: _Session) -> Iterator[bytes]:
    for seq, rows in session.run():
        buf, starts, ends = _encode(seq, rows)
        for s, e in zip(starts, ends):
            yield buf[s:e]


def _stream(draw: Callable[[int], np.ndarray], block: int = 1 << 14) -> Callable[[], float]:
    """An endless stream of Python numbers drawn `block` at a time; returns its next()."""

    def numbers() -> Iterator:
        while True:
            yield from draw(block).tolist()

    return numbers().__next__


def _flatten(chunks: Iterator[np.ndarray]) -> Callable[[], int]:
    """The next() of the numbers of a stream of arrays."""

    def numbers() -> Iterator[int]:
        for chunk in chunks:
            yield from chunk.tolist()

    return numbers().__next__


def _lots(rng: np.random.Generator, n: int) -> np.ndarray:
    """Order sizes: round lots (geometric), some odd lots, a few blocks."""
    u = rng.random(n)
    round_lots = rng.geometric(0.45, n) * ROUND_LOT
    odd = rng.integers(1, ROUND_LOT, n)
    blocks = rng.integers(10, 51, n) * ROUND_LOT
    return np.where(u < 0.10, odd, np.where(u < 0.97, round_lots, blocks))


# --- the plan: scripted messages, flow budget, phases ------------------------------------------------------------


@dataclass
class _Plan:
    listed: int  # symbols in the directory (locates 1..listed)
    flow: int  # order-flow messages (A F E C X D U P, and the executions in crosses)
    events: list[tuple[int, str, int, object]]  # (timestamp, kind, instrument index, argument), kinds below
    ipo: int  # instrument index of the IPO, -1 for none


def _make_plan(instruments: list[Instrument], messages: int) -> _Plan:
    """Decide every scripted message within the budget (see 'Budget' in the module docstring)."""
    events: list[tuple[int, str, int, object]] = []
    if messages < 6:
        short = ("", "C", "OC", "OEC", "OSEC", "OSMEC")[messages]
        at = {"O": START, "S": START + 1, "Q": OPEN, "M": CLOSE, "E": END, "C": END}
        return _Plan(0, 0, [(at[c], "S", -1, c) for c in short], -1)
    rest = messages - 6
    listed = 0 if rest < 2 else min(len(instruments), max(1, rest // 8))
    avail = rest - 2 * listed
    budget = avail * 12 // 100 if listed else avail
    spent = 0

    def take(cost: int) -> bool:
        nonlocal spent
        if spent + cost > budget:
            return False
        spent += cost
        return True

    prologue_extra: list[tuple[str, int, object]] = []  # sent after R and H, before S 'S'
    weight = [instruments[i].activity for i in range(listed)]
    ranks = sorted(range(listed), key=lambda i: (-weight[i], i))
    ipo = -1
    opens: list[int] = []
    closes: list[int] = []

    def add_cross(i: int, open_: bool) -> None:
        j = len(opens) if open_ else len(closes)
        (opens if open_ else closes).append(i)
        if open_:
            events.append((_OPEN_NOII[12], "I", i, "O"))
            events.append((OPEN + 1000 * (j + 1), "Q", i, "O"))
        else:
            events.append((_CLOSE_NOII[30], "I", i, "C"))
            events.append((CLOSE + 1000 * (j + 1), "Q", i, "C"))

    def add_halt(slot: int, i: int, operational: bool) -> None:
        t = _HALT_SLOTS[slot]
        if operational:
            events.append((t, "h", i, "H"))
            events.append((t + 3 * _MINUTE, "h", i, "T"))
        else:
            events.append((t, "H", i, ("H", "LUDP")))
            events.append((t + _SECOND, "J", i, 0))
            events.append((t + 4 * _MINUTE, "I", i, "H"))
            events.append((t + 5 * _MINUTE, "Q", i, "H"))
            events.append((t + 5 * _MINUTE + 1, "H", i, ("T", "")))

    if listed:
        top = ranks[0]
        if take(1):
            prologue_extra.append(("V", -1, None))
        if take(2):
            add_cross(top, True)
        if take(2):
            add_cross(top, False)
        if opens and take(1):
            events.append((_BREAK_TIMES[6], "B", -1, None))
        if take(1):
            events.append((_clock(15, 40), "W", -1, "1"))
        if take(1):
            prologue_extra.append(("Y", top, "0"))
        if take(1):
            prologue_extra.append(("L", top, 0))
        if take(1):
            events.append((_clock(10, 30), "N", top, "B"))
        if listed >= 2 and take(5):
            ipo = ranks[min(2, listed - 1)]
            prologue_extra.append(("K", ipo, None))
            events.append((_IPO_RELEASE, "O", ipo, None))
            events.append((_IPO_RELEASE + 5 * _MINUTE, "I", ipo, "H"))
            events.append((_IPO_CROSS, "Q", ipo, "H"))
            events.append((_IPO_CROSS + 1, "H", ipo, ("T", "")))
        haltable = [i for i in ranks if i != ipo]
        slot = 0
        if take(5):
            add_halt(slot, haltable[0], False)
            slot += 1
        if take(2):
            add_halt(slot, haltable[1 % len(haltable)], True)
            slot += 1
        # Optional, by priority.
        for i in ranks[1:]:
            if i != ipo and take(2):
                add_cross(i, True)
            if take(2):
                add_cross(i, False)
        for i in ranks[1:]:
            if take(1):
                prologue_extra.append(("Y", i, "0"))
        if take(1):
            events.append((_clock(14, 12), "Y", top, "1"))
        for n in (1, 2):
            for i in ranks:
                if take(1):
                    prologue_extra.append(("L", i, n))
        for i in ranks[:10]:
            for t in (_clock(12, 30), _clock(14, 30)):
                if take(1):
                    events.append((t, "N", i, "SAN"[len(events) % 3]))
        for i in opens:
            for j, t in enumerate(_OPEN_NOII):
                if j != 12 and take(1):
                    events.append((t, "I", i, "O"))
        for i in closes:
            for j, t in enumerate(_CLOSE_NOII):
                if j != 30 and take(1):
                    events.append((t, "I", i, "C"))
        luld, operational = max(1, listed // 8), max(1, listed // 16)
        while slot < len(_HALT_SLOTS) and (luld > 1 or operational > 1):
            if luld > 1 and take(5):
                add_halt(slot, haltable[slot % len(haltable)], False)
                luld -= 1
            elif operational > 1 and take(2):
                add_halt(slot, haltable[slot % len(haltable)], True)
                operational -= 1
            else:
                break
            slot += 1
        flow_estimate = avail - budget
        for t in _BREAK_TIMES[: min(len(_BREAK_TIMES), flow_estimate // 100_000)]:
            if t != _BREAK_TIMES[6] and opens and take(1):
                events.append((t, "B", -1, None))
    elif take(1):
        prologue_extra.append(("V", -1, None))

    # Prologue: S 'O', the directory, the extras, S 'S'; a microsecond apart.
    prologue: list[tuple[str, int, object]] = [("S", -1, "O")]
    prologue += [("R", i, None) for i in range(listed)]
    prologue += [("H", i, ("H", "IPO1") if i == ipo else ("T", "")) for i in range(listed)]
    prologue += sorted(prologue_extra, key=lambda e: ("YLVK".index(e[0]), e[1], str(e[2])))
    prologue.append(("S", -1, "S"))
    events[:0] = [(START + 1000 * j, kind, i, arg) for j, (kind, i, arg) in enumerate(prologue)]
    events += [(OPEN, "S", -1, "Q"), (CLOSE, "S", -1, "M"), (END, "S", -1, "E"), (END, "S", -1, "C")]
    return _Plan(listed, avail - spent, events, ipo)


# --- the session ---------------------------------------------------------------------------------------------------


class _Session:
    """The state of one generated day; `run()` yields blocks (type bytes in order, native records per type)."""

    def __init__(self, instruments: list[Instrument], messages: int, seed: int) -> None:
        self.messages = messages
        self.plan = plan = _make_plan(instruments, messages)
        self.instruments = instruments[: plan.listed]
        n = len(self.instruments)
        streams = [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence([seed, 2]).spawn(7)]
        self.unif = _stream(streams[0].random)
        self.expo = _stream(streams[1].standard_exponential)
        self.geo = _stream(lambda k: streams[2].geometric(0.55, k) - 1)
        self.lots = _stream(lambda k: _lots(streams[3], k))
        self.normal = _stream(streams[4].standard_normal)
        self._time_rng = streams[5]
        if n:
            weight = np.array([x.activity for x in self.instruments])
            weight /= weight.sum()
            self.pick = _stream(lambda k: streams[6].choice(n, k, p=weight))
        else:
            weight = np.zeros(0)
            self.pick = lambda: 0

        # Flow phases: how many flow messages each gets, where each starts in the flow.
        shares = np.array([p[2] for p in _PHASES])
        bounds = np.floor(np.cumsum(shares) / shares.sum() * plan.flow + 1e-9).astype(np.int64)
        bounds[-1] = plan.flow
        counts = np.diff(np.concatenate([[0], bounds])).tolist()
        self.phases = []  # (t0, t1, first flow index, count, phase)
        k0 = 0
        for (t0, t1, _, phase), c in zip(_PHASES, counts):
            self.phases.append((t0, t1, k0, c, phase))
            k0 += c
        self.flow_ts = _flatten(self._flow_times())

        # Scripted events by flow position; phase changes are events too.
        events = list(plan.events)
        for t0, _, _, _, phase in self.phases:
            events.append((t0, "phase", -1, phase))
        keyed = sorted((self._position(e[0]), e[0], j, e) for j, e in enumerate(events))
        self.events = [(k, t, kind, i, arg) for k, t, _, (_, kind, i, arg) in keyed]

        # Instruments.
        self.locate = [x.locate for x in self.instruments]
        self.stock = [x.stock.encode("ascii") for x in self.instruments]
        self.fair = [float(x.price) for x in self.instruments]
        self.last_price = [x.price for x in self.instruments]
        self.usual_spread = [TICK * max(1, round(x.price / 10_000 / 60)) for x in self.instruments]
        arrivals = [max(1.0, plan.flow * _ARRIVALS_PER_MESSAGE * w) for w in weight.tolist()]
        self.sigma = [x.price * _DAILY_VOLATILITY / a**0.5 for x, a in zip(self.instruments, arrivals)]
        self.life = [1.0 / max(1e-12, _ARRIVALS_PER_MESSAGE * w) for w in weight.tolist()]
        self.trading_halt = [False] * n
        self.operational_halt = [False] * n
        self.halted = [False] * n

        # Book: per book (2 * instrument + side), price key -> FIFO (dict of reference -> None), and the sorted
        # keys. key = price for bids, -price for asks, so on both sides the best level is keys[-1] and a price
        # is on the right side of the opposite best iff key < -opposite_keys[-1].
        self.levels: list[dict[int, dict[int, None]]] = [{} for _ in range(2 * n)]
        self.keys: list[list[int]] = [[] for _ in range(2 * n)]
        self.orders: dict[int, list[int]] = {}  # reference -> [book, key, shares]
        self.heap: list[tuple[float, int, int]] = []  # (due flow position, reference, fate)
        self.matches: list[tuple[int, int]] = []  # recent (match number, locate) of executions, for B
        self.cross_matches: list[tuple[int, int]] = []

        self.seq = bytearray()
        self.rows: dict[int, list] = {ord(t): [] for t in itch.TYPES}
        self.k = 0  # flow messages emitted
        self.match = 0
        self.last = 0  # last timestamp
        self.phase = _PRE
        self.emitted = 0

    # --- time ----------------------------------------------------------------------------------------------------

    def _position(self, t: int) -> int:
        """Flow position of a scripted event at time t: it is sent before flow message number k."""
        for t0, t1, k0, count, _ in self.phases:
            if t < t0:
                return k0
            if t < t1:
                return k0 + int((t - t0) / (t1 - t0) * count)
        return self.plan.flow

    def _flow_times(self) -> Iterator[np.ndarray]:
        """Timestamps of the flow messages: in each phase, bursty gaps scaled to fill it (a Dirichlet
        split into chunks so a long phase never has to be drawn at once).

        Real feeds are bursty: one event (a sweep, a requote, a cancel wave) makes several messages within
        microseconds, and that is what fills MoldUDP64 packets. A gap is short (_BURST_GAP times a normal
        gap, about a microsecond once scaled) with probability _P_BURST, else an ordinary exponential gap."""
        rng = self._time_rng
        chunk = 1 << 16
        for t0, t1, _, count, _ in self.phases:
            if count == 0:
                continue
            sizes = [chunk] * ((count - 1) // chunk) + [count - chunk * ((count - 1) // chunk)]
            mass = rng.standard_gamma(np.array([*sizes, 1.0], dtype=float))
            edges = np.cumsum(mass) / mass.sum()
            lo = 0.0
            for size, hi in zip(sizes, edges.tolist()):
                raw = rng.standard_exponential(size)
                raw[rng.random(size) < _P_BURST] *= _BURST_GAP
                gaps = np.cumsum(raw)
                where = lo + (hi - lo) * (gaps / gaps[-1])
                yield (t0 + np.floor(where * (t1 - t0))).astype(np.int64)
                lo = hi

    # --- book primitives (also used by the scripted crosses) ------------------------------------------------------

    def _add(self, ref: int, book: int, key: int, shares: int) -> None:
        levels = self.levels[book]
        level = levels.get(key)
        if level is None:
            levels[key] = {ref: None}
            insort(self.keys[book], key)
        else:
            level[ref] = None
        self.orders[ref] = [book, key, shares]

    def _remove(self, ref: int, book: int, key: int) -> None:
        levels = self.levels[book]
        level = levels[key]
        del level[ref]
        if not level:
            del levels[key]
            keys = self.keys[book]
            if keys[-1] == key:
                keys.pop()
            else:
                del keys[bisect_left(keys, key)]
        del self.orders[ref]

    def _place(self, book: int, i: int) -> int:
        """Price key of a new passive order on `book`: near the touch, never crossing or locking."""
        own = self.keys[book]
        opposite = self.keys[book ^ 1]
        geo = self.geo
        if own:
            best = own[-1]
            if opposite:
                gap = -opposite[-1] - best
                if gap > TICK and self.unif() < (_P_IMPROVE if gap <= self.usual_spread[i] else _P_IMPROVE_WIDE):
                    step = TICK * (1 + geo())
                    return best + (step if step < gap else gap - TICK)
            key = best - TICK * geo()
        elif opposite:
            key = -opposite[-1] - TICK * (1 + geo())
        else:
            fair = max(100, round(self.fair[i] / TICK)) * TICK
            key = (fair if book & 1 == 0 else -fair) - TICK * (1 + geo())
        if book & 1 == 0 and key < TICK:  # a bid of at least one tick (only reachable on a collapsed book)
            key = TICK
        return key

    # --- scripted messages -----------------------------------------------------------------------------------------

    def _emit(self, letter: bytes, *fields: object) -> None:
        self.rows[letter[0]].append((letter, *fields))
        self.seq.append(letter[0])

    def _tradable(self) -> int:
        """An instrument that is not halted (by activity when possible), or -1 when all are."""
        halted = self.halted
        for _ in range(8):
            i = self.pick()
            if not halted[i]:
                return i
        for i, h in enumerate(halted):
            if not h:
                return i
        return -1

    def _reference(self, i: int) -> int:
        """The instrument's reference price: the midpoint (on the tick) when both sides exist, else the last."""
        bids, asks = self.keys[2 * i], self.keys[2 * i + 1]
        if bids and asks:
            return (bids[-1] - asks[-1]) // 2 // TICK * TICK
        return self.last_price[i]

    def _fire(self, t: int, kind: str, i: int, arg: object) -> None:
        """Send one scripted event (its message count is fixed by the plan; a cross may also spend flow)."""
        if kind == "phase":
            self.phase = arg  # type: ignore[assignment]
            return
        t = max(t, self.last)
        self.last = t
        emit = self._emit
        loc, stock = (self.locate[i], self.stock[i]) if i >= 0 else (0, b"")
        if kind == "S":
            emit(b"S", 0, 0, t, str(arg).encode())
        elif kind == "R":
            x = self.instruments[i]
            nasdaq = x.nasdaq_listed
            ipo = b"Y" if i == self.plan.ipo else b"N" if nasdaq else b" "
            tier = b"1" if x.stock in _CURATED_NAMES or x.activity > 0.01 else b"2"
            emit(b"R", loc, 0, t, stock, x.market_category.encode(), b"N" if nasdaq else b" ", ROUND_LOT, b"N",
                 x.issue_classification.encode(), b"Z", b"P", b"N", ipo, tier, b"Y" if x.etp_leverage else b"N",
                 x.etp_leverage, b"Y" if x.inverse else b"N")  # fmt: skip
        elif kind in "Hh":
            if kind == "H":
                state, reason = arg  # type: ignore[misc]
                emit(b"H", loc, 0, t, stock, state.encode(), b" ", reason.encode())
                self.trading_halt[i] = state != "T"
            else:
                emit(b"h", loc, 0, t, stock, b"Q", str(arg).encode())
                self.operational_halt[i] = arg == "H"
            self.halted[i] = self.trading_halt[i] or self.operational_halt[i]
        elif kind == "Y":
            emit(b"Y", loc, 0, t, stock, str(arg).encode())
        elif kind == "L":
            mpid = _MPIDS[(5 * i + 3 * int(arg)) % len(_MPIDS)]  # type: ignore[call-overload]
            emit(b"L", loc, 0, t, mpid.encode(), stock, b"Y" if arg == 0 else b"N", b"N", b"A")
        elif kind == "V":
            emit(b"V", 0, 0, t, 4650 * 10**8, 4350 * 10**8, 4000 * 10**8)  # 7/13/20 % under an S&P 500 of 5000
        elif kind == "W":
            emit(b"W", 0, 0, t, str(arg).encode())
        elif kind == "N":
            emit(b"N", loc, 0, t, stock, str(arg).encode())
        elif kind == "K":
            emit(b"K", loc, 0, t, stock, _IPO_RELEASE // _SECOND, b"A", self.instruments[i].price)
        elif kind == "O":
            p = self.instruments[i].price
            emit(b"O", loc, 0, t, stock, b"Y", _on_tick(p * 0.8), _on_tick(p * 1.2), p, t, _on_tick(p * 0.9),
                 _on_tick(p * 1.1))  # fmt: skip
        elif kind == "J":
            p = self._reference(i)
            emit(b"J", loc, 0, t, stock, p, _on_tick(p * 1.05), _on_tick(p * 0.95), int(arg))  # type: ignore[call-overload]
        elif kind == "I":
            p = self._reference(i)
            u = self.unif()
            side = b"B" if u < 0.4 else b"S" if u < 0.8 else b"N"
            imbalance = 0 if side == b"N" else self.lots() * (1 + self.geo())
            drift = TICK * self.geo() * (1 if side == b"B" else -1)
            emit(b"I", loc, 0, t, self.lots() * (4 + self.geo()), imbalance, side, stock, max(TICK, p + 2 * drift),
                 max(TICK, p + drift), p, str(arg).encode(), b"L" if u < 0.9 else b"1")  # fmt: skip
        elif kind == "B":
            pool = self.matches or self.cross_matches
            number, where = pool[int(self.unif() * len(pool))]
            emit(b"B", where, 0, t, number)
        elif kind == "Q":
            self._cross(t, i, str(arg))
        else:
            raise AssertionError(f"unknown scripted event {kind!r}")

    def _cross(self, t: int, i: int, cross_type: str) -> None:
        """A cross: resting orders at the cross price executed (non-printable C), then the cross trade Q."""
        loc = self.locate[i]
        executed = 0
        price = self._reference(i)
        if not self.halted[i] and cross_type in "OC":
            bids, asks = self.keys[2 * i], self.keys[2 * i + 1]
            if bids or asks:
                book = 2 * i if bids and (not asks or self.unif() < 0.5) else 2 * i + 1
                key = self.keys[book][-1]
                price = -key if book & 1 else key
                level = self.levels[book][key]
                count = 1 + self.geo()
                while count and level and self.k < self.plan.flow:
                    ref = next(iter(level))
                    order = self.orders[ref]
                    rest = order[2]
                    x = rest if rest < 200 or self.unif() < 0.7 else rest // 2
                    self.match += 1
                    self._emit(b"C", loc, 0, t, ref, x, self.match, b"N", price)
                    self.flow_ts()
                    self.k += 1
                    executed += x
                    count -= 1
                    if x == rest:
                        self._remove(ref, book, key)
                    else:
                        order[2] = rest - x
        self.match += 1
        shares = executed + self.lots() * (5 + 5 * self.geo())
        self._emit(b"Q", loc, 0, t, shares, self.stock[i], price, self.match, cross_type.encode())
        self.cross_matches.append((self.match, loc))
        self.last_price[i] = price

    # --- the day -----------------------------------------------------------------------------------------------------

    def run(self) -> Iterator[tuple[bytearray, dict[int, list]]]:
        """Yields blocks of about _BLOCK messages; the lists are reused, so encode a block before the next."""
        seq, rows = self.seq, self.rows
        sq = seq.append
        ra, rf, re, rc = rows[65].append, rows[70].append, rows[69].append, rows[67].append
        rx, rd, ru, rp = rows[88].append, rows[68].append, rows[85].append, rows[80].append
        orders, levels, keys, heap = self.orders, self.levels, self.keys, self.heap
        hpush, hpop = heapq.heappush, heapq.heappop
        unif, expo, lots, normal, pick, flow_ts = self.unif, self.expo, self.lots, self.normal, self.pick, self.flow_ts
        locate, stock, halted, life, fair, sigma = (
            self.locate,
            self.stock,
            self.halted,
            self.life,
            self.fair,
            self.sigma,
        )
        last_price, matches = self.last_price, self.matches
        add, remove, place = self._add, self._remove, self._place
        events = self.events
        n_events = len(events)
        flow = self.plan.flow
        mpids = _MPIDS
        p_add, p_market = _MIX[_PRE]

        def fate_of(ref: int, i: int, k: int) -> None:
            """Draw what happens to a new resting order, and when (in flow messages from k). A fate due after
            the end of the flow is not kept: the order just rests until the end of the day."""
            v = unif()
            if v < _FATE_DELETE:
                fate, due = _DELETE, k + expo() * _LIFE_SHORT * life[i]
            elif v < _FATE_REPLACE:
                fate, due = _REPLACE if v >= _FATE_CANCEL else _CANCEL, k + expo() * _LIFE_SHORT * life[i]
            else:
                fate, due = _DELETE, k + expo() * _LIFE_LONG * life[i]
            if due < flow:
                hpush(heap, (due, ref, fate))

        k = 0
        match = 0
        last = 0
        ref_next = 1
        ei = 0
        while True:
            # Scripted messages due before flow message k (they may also spend flow on cross executions).
            if ei < n_events and events[ei][0] <= k:
                self.k, self.match, self.last = k, match, last
                while ei < n_events and events[ei][0] <= self.k:
                    self._fire(*events[ei][1:])
                    ei += 1
                k, match, last = self.k, self.match, self.last
                p_add, p_market = _MIX[self.phase]
            if k >= flow:
                if ei < n_events:
                    continue
                break

            if heap and heap[0][0] <= k:
                # A resting order's fate is due.
                _, ref, fate = hpop(heap)
                order = orders.get(ref)
                if order is None:
                    continue  # already executed or replaced
                book, key, shares = order
                i = book >> 1
                t = flow_ts()
                if t < last:
                    t = last
                last = t
                if fate == _DELETE or (fate == _REPLACE and halted[i]) or (fate == _CANCEL and shares < 2):
                    rd((b"D", locate[i], 0, t, ref))
                    sq(68)
                    remove(ref, book, key)
                elif fate == _CANCEL:
                    cut = (shares // 200) * ROUND_LOT if shares >= 200 else shares // 2
                    rx((b"X", locate[i], 0, t, ref, cut))
                    sq(88)
                    order[2] = shares - cut
                    hpush(heap, (k + expo() * _LIFE_LONG * 0.5 * life[i], ref, _DELETE))
                else:
                    remove(ref, book, key)
                    key = place(book, i)
                    new = ref_next
                    ref_next += 1
                    if unif() < 0.5:
                        shares = lots()
                    ru((b"U", locate[i], 0, t, ref, new, shares, key if book & 1 == 0 else -key))
                    sq(85)
                    add(new, book, key, shares)
                    fate_of(new, i, k)
                k += 1
            else:
                i = pick()
                if halted[i]:
                    i = self._tradable()
                    if i < 0:  # every instrument halted: bring the next scripted message (a resumption) forward
                        if ei == n_events:
                            raise RuntimeError("market generator stalled: every instrument halted for good (bug)")
                        self.k, self.match, self.last = k, match, last
                        self._fire(*events[ei][1:])
                        ei += 1
                        k, match, last = self.k, self.match, self.last
                        p_add, p_market = _MIX[self.phase]
                        continue
                fair[i] += sigma[i] * normal()
                t = flow_ts()
                if t < last:
                    t = last
                last = t
                u = unif()
                if u >= p_add and u < p_add + p_market:
                    # A marketable order: executions against the opposite best, FIFO.
                    bids, asks = keys[2 * i], keys[2 * i + 1]
                    if bids and asks:
                        mid = (bids[-1] - asks[-1]) * 0.5
                        lean = (fair[i] - mid) / (8.0 * self.usual_spread[i])
                        buy = unif() < 0.5 + (0.35 if lean > 0.35 else -0.35 if lean < -0.35 else lean)
                    else:
                        buy = bool(asks)
                    book = 2 * i + 1 if buy else 2 * i
                    side_keys = keys[book]
                    if side_keys:
                        wanted = lots() * (1 + self.geo())
                        room = flow - k  # at least 1
                        sent = 0
                        levels_of_book = levels[book]
                        loc = locate[i]
                        while True:
                            key = side_keys[-1]
                            price = -key if book & 1 else key
                            level = levels_of_book[key]
                            emptied = False
                            while wanted and room:
                                ref = next(iter(level))
                                order = orders[ref]
                                rest = order[2]
                                x = rest if rest <= wanted else wanted
                                match += 1
                                if sent:
                                    flow_ts()  # one timestamp per flow message; an order's executions share t
                                if unif() < _P_PRINTABLE_C:
                                    rc((b"C", loc, 0, t, ref, x, match, b"Y", price))
                                    sq(67)
                                else:
                                    re((b"E", loc, 0, t, ref, x, match))
                                    sq(69)
                                matches.append((match, loc))
                                sent += 1
                                room -= 1
                                wanted -= x
                                if x == rest:
                                    remove(ref, book, key)
                                    if not level:
                                        emptied = True
                                        break
                                else:
                                    order[2] = rest - x
                            last_price[i] = price
                            if not (emptied and wanted and room and side_keys) or unif() >= _P_SWEEP:
                                break
                        if emptied and wanted and room and unif() < _P_POST_REST:
                            # The rest posts at the price it emptied: inside the new spread, never crossing.
                            ref = ref_next
                            ref_next += 1
                            own = book ^ 1
                            add(ref, own, -price if own & 1 else price, wanted)
                            ra((b"A", loc, 0, t, ref, b"S" if own & 1 else b"B", wanted, stock[i], price))
                            sq(65)
                            flow_ts()
                            sent += 1
                            fate_of(ref, i, k)
                        k += sent - 1  # the common k += 1 below counts the last
                    else:
                        u = 0.0  # nothing to execute against: post instead
                if u < p_add:
                    book = 2 * i + (1 if unif() < 0.5 else 0)
                    key = place(book, i)
                    ref = ref_next
                    ref_next += 1
                    shares = lots()
                    price = key if book & 1 == 0 else -key
                    add(ref, book, key, shares)
                    if unif() < _P_MPID:
                        mpid = mpids[int(unif() * len(mpids))]
                        rf((b"F", locate[i], 0, t, ref, b"S" if book & 1 else b"B", shares, stock[i], price, mpid))
                        sq(70)
                    else:
                        ra((b"A", locate[i], 0, t, ref, b"S" if book & 1 else b"B", shares, stock[i], price))
                        sq(65)
                    fate_of(ref, i, k)
                elif u >= p_add + p_market:
                    # A non-displayed execution, at the midpoint when there is one.
                    bids, asks = keys[2 * i], keys[2 * i + 1]
                    if bids and asks:
                        price = (bids[-1] - asks[-1]) // 2 // 50 * 50
                    else:
                        price = last_price[i]
                    match += 1
                    rp((b"P", locate[i], 0, t, 0, b"B", lots(), stock[i], price, match))
                    sq(80)
                    matches.append((match, locate[i]))
                    last_price[i] = price
                k += 1
            if len(seq) >= _BLOCK:
                del matches[:-4096]  # B breaks one of the recent executions
                self.emitted += len(seq)
                yield seq, rows
                seq.clear()
                for records in rows.values():
                    records.clear()
        if seq:
            self.emitted += len(seq)
            yield seq, rows
        if self.emitted != self.messages or k != flow:
            raise RuntimeError(f"market generator produced {self.emitted} messages, not {self.messages} (bug)")
