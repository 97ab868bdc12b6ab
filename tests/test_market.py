"""The synthetic market generator: exact length, determinism, realism, and the invariants the book replays rely on.

The invariants are checked by `Replay`, a deliberately plain dict-based book written here from the decoded
file (read back with wirebook.proto.itch_file), independent of the generator's own book.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wirebook.proto import itch, itch_file
from wirebook.sim import market

FOUR_AM = 4 * 3600 * 10**9
EIGHT_PM = 20 * 3600 * 10**9
TRADING_TYPES = set("AFECUP")  # what may not touch a halted instrument (X and D may)


def decoded(path: Path) -> list[tuple[str, object]]:
    """Every message of an ITCH file, in order, as (type letter, namedtuple-like row)."""
    chunk = itch_file.read_all(path)
    out: list = [None] * len(chunk)
    for letter, rows in chunk.decode().items():
        names = rows.dtype.names
        for row in rows.tolist():
            record = dict(zip(names, row))
            out[record["index"]] = (letter, record)
    return out


@dataclass
class Replay:
    """A straightforward order book over all instruments that asserts every invariant as it goes."""

    orders: dict[int, list] = field(default_factory=dict)  # ref -> [locate, side, price, shares]
    levels: dict[tuple[int, str], dict[int, list[int]]] = field(default_factory=dict)  # (locate, side) -> price -> refs
    stocks: dict[int, str] = field(default_factory=dict)  # from the stock directory
    halted: dict[int, bool] = field(default_factory=dict)  # trading action not 'T'
    operational: dict[int, bool] = field(default_factory=dict)  # operational halt
    last_ref: int = 0
    last_match: int = 0
    matches: set[int] = field(default_factory=set)
    last_time: int = 0
    system: list[str] = field(default_factory=list)
    halts: list[int] = field(default_factory=list)  # locates halted at some point
    adds_during_halt: int = 0
    cancels_during_halt: int = 0

    def run(self, messages: list[tuple[str, dict]]) -> Replay:
        for n, (letter, m) in enumerate(messages):
            try:
                self.step(letter, m)
            except AssertionError as e:
                raise AssertionError(f"message {n} {letter!r} {m}: {e}") from None
        return self

    def is_halted(self, locate: int) -> bool:
        return self.halted.get(locate, False) or self.operational.get(locate, False)

    def best(self, locate: int, side: str) -> int | None:
        prices = self.levels.get((locate, side))
        if not prices:
            return None
        return max(prices) if side == "B" else min(prices)

    def check_not_crossed(self, locate: int) -> None:
        bid, ask = self.best(locate, "B"), self.best(locate, "S")
        assert bid is None or ask is None or bid < ask, f"book {locate} crossed or locked: {bid} >= {ask}"

    def add(self, ref: int, locate: int, side: str, price: int, shares: int) -> None:
        assert ref > self.last_ref, f"order reference {ref} not above {self.last_ref}"
        assert shares > 0 and price > 0, "empty add"
        assert side in ("B", "S")
        self.last_ref = ref
        self.orders[ref] = [locate, side, price, shares]
        self.levels.setdefault((locate, side), {}).setdefault(price, []).append(ref)
        self.check_not_crossed(locate)

    def live(self, ref: int, locate: int) -> list:
        assert ref in self.orders, f"order {ref} is not live"
        order = self.orders[ref]
        assert order[0] == locate, f"order {ref} belongs to locate {order[0]}, not {locate}"
        return order

    def take(self, ref: int, shares: int) -> None:
        order = self.orders[ref]
        assert 0 < shares <= order[3], f"{shares} shares off order {ref} with {order[3]} left"
        order[3] -= shares
        if order[3] == 0:
            self.delete(ref)

    def delete(self, ref: int) -> None:
        locate, side, price, _ = self.orders.pop(ref)
        level = self.levels[(locate, side)][price]
        level.remove(ref)
        if not level:
            del self.levels[(locate, side)][price]

    def match(self, number: int) -> None:
        assert number > self.last_match, f"match number {number} not above {self.last_match}"
        self.last_match = number
        self.matches.add(number)

    def step(self, letter: str, m: dict) -> None:
        t = m["timestamp"]
        assert self.last_time <= t, f"timestamp {t} before {self.last_time}"
        assert FOUR_AM <= t <= EIGHT_PM, f"timestamp {t} outside 04:00-20:00"
        self.last_time = t
        locate = m["stock_locate"]
        if letter in "SVW":
            assert locate == 0
        elif letter != "R":
            assert locate in self.stocks, f"stock locate {locate} not in the stock directory"
        if "stock" in m and letter != "R":
            assert m["stock"].decode().strip() == self.stocks[locate], "stock and stock locate disagree"
        if letter in TRADING_TYPES and letter != "C":
            assert not self.is_halted(locate), f"{letter} on halted locate {locate}"
        if letter == "S":
            self.system.append(m["event_code"].decode())
        elif letter == "R":
            assert locate not in self.stocks, f"locate {locate} listed twice"
            assert m["round_lot_size"] == 100
            self.stocks[locate] = m["stock"].decode().strip()
        elif letter == "H":
            self.halted[locate] = m["trading_state"] != b"T"
            if self.halted[locate]:
                self.halts.append(locate)
        elif letter == "h":
            self.operational[locate] = m["operational_halt_action"] == b"H"
        elif letter in "AF":
            self.add(m["order_reference_number"], locate, m["buy_sell_indicator"].decode(), m["price"], m["shares"])
        elif letter in "EC":
            ref = m["order_reference_number"]
            _, side, price, _ = self.live(ref, locate)
            printable = letter == "E" or m["printable"] == b"Y"
            assert not self.is_halted(locate), f"execution on halted locate {locate}"
            assert price == self.best(locate, side), f"execution of {ref} at {price}, not at the best of its side"
            assert self.levels[(locate, side)][price][0] == ref, f"execution of {ref} out of FIFO order"
            if letter == "C":
                assert m["execution_price"] == price or not printable
            self.match(m["match_number"])
            self.take(ref, m["executed_shares"])
        elif letter == "X":
            ref = m["order_reference_number"]
            self.live(ref, locate)
            self.cancels_during_halt += self.is_halted(locate)
            self.take(ref, m["cancelled_shares"])
        elif letter == "D":
            ref = m["order_reference_number"]
            self.live(ref, locate)
            self.cancels_during_halt += self.is_halted(locate)
            self.delete(ref)
        elif letter == "U":
            old, new = m["original_order_reference_number"], m["new_order_reference_number"]
            _, side, _, _ = self.live(old, locate)
            self.delete(old)
            self.add(new, locate, side, m["price"], m["shares"])
        elif letter in "PQ":
            self.match(m["match_number"])
        elif letter == "B":
            assert m["match_number"] in self.matches, f"broken trade of unknown match {m['match_number']}"
        self.adds_during_halt += letter in "AF" and self.is_halted(locate)


def write(tmp_path: Path, symbols: int, messages: int, seed: int) -> tuple[dict, list]:
    path = tmp_path / f"day-{symbols}-{messages}-{seed}.itch"
    summary = market.write_itch(path, symbols, messages, seed)
    return summary, decoded(path)


def digest(symbols: int, messages: int, seed: int) -> str:
    h = hashlib.sha256()
    for message in market.generate(symbols, messages, seed):
        h.update(message)
    return h.hexdigest()


# --- length and determinism -------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes():
    assert digest(30, 20_000, 11) == digest(30, 20_000, 11)
    assert digest(30, 20_000, 11) != digest(30, 20_000, 12)


@pytest.mark.parametrize("messages", [0, 1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 40, 300, 1999])
@pytest.mark.parametrize("symbols", [1, 3, 200])
def test_exact_length_and_valid_at_any_size(tmp_path, symbols, messages):
    summary, messages_read = write(tmp_path, symbols, messages, seed=5)
    assert summary["messages"] == len(messages_read) == messages
    replay = Replay().run(messages_read)
    codes = "".join(replay.system)
    if messages:
        assert codes.endswith("C"), "the day ends with S 'C'"
    if messages >= 6:
        assert codes == "OSQMEC"
        assert messages_read[0][0] == "S" and messages_read[-1][0] == "S"
    else:
        assert codes == "".join(c for c in "OSQMEC" if c in codes)  # a subsequence, in order


def test_messages_are_the_spec_lengths():
    for message in market.generate(10, 3000, 2):
        assert len(message) == itch.MESSAGES[chr(message[0])].length


def test_the_file_holds_the_generated_messages(tmp_path):
    path = tmp_path / "day.itch"
    summary = market.write_itch(path, 10, 3000, 2)
    chunk = itch_file.read_all(path)
    assert [chunk.message(i) for i in range(len(chunk))] == list(market.generate(10, 3000, 2))
    assert summary["bytes"] == path.stat().st_size
    assert summary["first_timestamp"] == FOUR_AM and summary["last_timestamp"] == EIGHT_PM


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="messages"):
        market.generate(10, -1, 0)
    with pytest.raises(ValueError, match="symbols"):
        market.generate(0, 100, 0)


# --- realism ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("symbols", "messages", "seed"), [(50, 2000, 1), (8, 2000, 2), (50, 2000, 3), (20, 5000, 4)])
def test_every_message_type_occurs(symbols, messages, seed):
    seen = Counter(chr(m[0]) for m in market.generate(symbols, messages, seed))
    assert set(seen) == set(itch.TYPES), f"missing {set(itch.TYPES) - set(seen)}"


def test_the_bulk_is_order_flow_and_activity_is_skewed(tmp_path):
    summary, messages = write(tmp_path, 50, 60_000, 1)
    types = summary["types"]
    assert sum(types[t] for t in "AFECXDU") > 0.85 * summary["messages"]
    assert types["A"] > types["F"] > 0 and types["D"] > types["U"] > 0 and types["E"] > types["C"] > 0
    adds = Counter(m["stock_locate"] for letter, m in messages if letter in "AF")
    busiest = adds.most_common()
    assert busiest[0][1] > 5 * busiest[len(busiest) // 2][1], "a Zipf market: a few names carry most of the flow"


def test_day_structure(tmp_path):
    summary, messages = write(tmp_path, 20, 20_000, 3)
    assert summary["symbols"] == 20
    letters = [letter for letter, _ in messages]
    system = [(n, m["event_code"].decode(), m["timestamp"]) for n, (letter, m) in enumerate(messages) if letter == "S"]
    position = {code: n for n, code, _ in system}
    when = {code: t for _, code, t in system}
    assert position["O"] == 0 and when["O"] == FOUR_AM
    # The directory and trading actions come before S 'S' (start of system hours).
    directory = [n for n, letter in enumerate(letters) if letter == "R"]
    assert directory == list(range(1, 21)) and position["S"] > directory[-1]
    locates = [messages[n][1]["stock_locate"] for n in directory]
    tickers = [messages[n][1]["stock"].decode().strip() for n in directory]
    assert locates == list(range(1, 21)) and tickers == sorted(set(tickers))
    assert when["Q"] == 9.5 * 3600 * 10**9 and when["M"] == 16 * 3600 * 10**9 and when["E"] == EIGHT_PM
    # Opening crosses right after S 'Q', preceded by NOII for the opening; closing crosses after S 'M'.
    crosses = [(n, m) for n, (letter, m) in enumerate(messages) if letter == "Q"]
    opening = [n for n, m in crosses if m["cross_type"] == b"O"]
    closing = [n for n, m in crosses if m["cross_type"] == b"C"]
    assert opening and all(n > position["Q"] for n in opening)
    assert closing and all(position["M"] < n < position["E"] for n in closing)
    noii = [m for letter, m in messages if letter == "I" and m["cross_type"] == b"O"]
    assert noii and all(m["timestamp"] < when["Q"] for m in noii)
    # The opening burst: many adds within two seconds of the open.
    burst = [m for letter, m in messages if letter in "AF" and when["Q"] <= m["timestamp"] < when["Q"] + 2 * 10**9]
    assert len(burst) > 200
    # Prices are whole cents, at the instrument's own level.
    prices = [m["price"] for letter, m in messages if letter in "AF"]
    assert all(p % 100 == 0 for p in prices) and min(prices) >= 50_000 and max(prices) < 6_000_000


# --- invariants, by independent replay ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbols", "messages", "seed"), [(50, 80_000, 1), (1, 8_000, 3), (2, 8_000, 4), (7, 30_000, 9)]
)
def test_invariants_hold_on_replay(tmp_path, symbols, messages, seed):
    summary, messages_read = write(tmp_path, symbols, messages, seed)
    replay = Replay().run(messages_read)
    assert summary["types"] == itch_file.count_types(tmp_path / f"day-{symbols}-{messages}-{seed}.itch")
    assert replay.orders, "orders still rest at the end of the day"
    assert replay.adds_during_halt == 0


def _broken(kind: str, messages: list[bytes]) -> list[bytes]:
    """The stream with one realistic-looking but invalid message inserted."""
    decoded = [itch.decode(m) for m in messages]
    n, first_add = next((n, m) for n, m in enumerate(decoded) if m.message_type == "A")
    fields = first_add._asdict()
    del fields["message_type"]
    if kind == "reused reference":
        return [*messages[: n + 1], itch.encode("A", **fields), *messages[n + 1 :]]
    if kind == "crossing add":
        bid = fields["buy_sell_indicator"] == "B"
        fields.update(order_reference_number=10**12, buy_sell_indicator="S" if bid else "B")
        return [*messages[: n + 1], itch.encode("A", **fields), *messages[n + 1 :]]
    if kind == "over-execution":
        bad = itch.encode("E", **{k: fields[k] for k in ("stock_locate", "tracking_number", "timestamp")},
                          order_reference_number=fields["order_reference_number"],
                          executed_shares=fields["shares"] + 1, match_number=10**12)  # fmt: skip
        return [*messages[: n + 1], bad, *messages[n + 1 :]]
    if kind == "add during halt":
        h = next(n for n, m in enumerate(decoded) if m.message_type == "H" and m.trading_state == "H")
        locate = decoded[h].stock_locate
        a = next(m for m in decoded[h:] if m.message_type == "A" and m.stock_locate == locate)._asdict()
        del a["message_type"]
        a.update(order_reference_number=10**12, timestamp=decoded[h].timestamp)
        return [*messages[: h + 1], itch.encode("A", **a), *messages[h + 1 :]]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "complaint"),
    [
        ("reused reference", "not above"),
        ("crossing add", "crossed or locked"),
        ("over-execution", "shares off order"),
        ("add during halt", "on halted locate"),
    ],
)
def test_the_replay_catches_broken_streams(tmp_path, kind, complaint):
    """The invariant checks above can fail: one bad message in a good day is caught."""
    good = list(market.generate(5, 3000, 1))
    path = tmp_path / "bad.itch"
    with itch_file.ItchWriter(path) as writer:
        for message in _broken(kind, good):
            writer.write(message)
    with pytest.raises(AssertionError, match=complaint):
        Replay().run(decoded(path))


def test_halts_stop_trading_but_not_cancels(tmp_path):
    _, messages = write(tmp_path, 30, 60_000, 2)
    replay = Replay().run(messages)
    assert replay.halts, "the day has halts"
    actions = [(m["stock_locate"], m["trading_state"]) for letter, m in messages if letter == "H"]
    for locate in set(replay.halts):
        states = [s for loc, s in actions if loc == locate]
        assert states[-1] == b"T", f"locate {locate} halted but never resumed"
    assert any(letter == "J" for letter, _ in messages) and any(letter == "h" for letter, _ in messages)
    assert replay.cancels_during_halt > 0, "cancels go on while an instrument is halted"


def test_thousands_of_instruments(tmp_path):
    summary, messages = write(tmp_path, 2000, 40_000, 6)
    assert summary["symbols"] == 2000 and summary["messages"] == 40_000
    replay = Replay().run(messages)
    used = {m["stock_locate"] for _, m in messages} - {0}
    assert used <= set(replay.stocks) and len(set(replay.stocks.values())) == 2000


def test_directory_is_shortened_when_messages_are_few(tmp_path):
    summary, messages = write(tmp_path, 2000, 1000, 6)
    assert 0 < summary["symbols"] < 2000
    Replay().run(messages)


def test_universe_names_do_not_depend_on_the_seed():
    a, b = market.universe(300, 1), market.universe(300, 2)
    assert [x.stock for x in a] == [x.stock for x in b]
    assert [x.price for x in a] != [x.price for x in b]
    assert [x.locate for x in a] == list(range(1, 301))
    assert abs(sum(x.activity for x in a) - 1) < 1e-9
    assert all(500 <= x.price / 100 <= 50_000 for x in a)  # $5-$500
