"""The golden model: directed book scenarios, a brute-force cross-check, and its refusal of bad input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirebook.model.book import BookError, BookModel
from wirebook.proto import bbo, itch, itch_file


def add(ref, side, shares, price, locate=1, letter="A"):
    extra = {"attribution": "MPID"} if letter == "F" else {}
    return itch.encode(letter, stock_locate=locate, tracking_number=0, timestamp=ref, order_reference_number=ref,
                       buy_sell_indicator=side, shares=shares, stock="T", price=price, **extra)  # fmt: skip


def execute(ref, shares, locate=1):
    return itch.encode("E", stock_locate=locate, tracking_number=0, timestamp=0, order_reference_number=ref,
                       executed_shares=shares, match_number=1)  # fmt: skip


def execute_at(ref, shares, price, locate=1):
    return itch.encode("C", stock_locate=locate, tracking_number=0, timestamp=0, order_reference_number=ref,
                       executed_shares=shares, match_number=2, printable="Y", execution_price=price)  # fmt: skip


def cancel(ref, shares, locate=1):
    return itch.encode("X", stock_locate=locate, tracking_number=0, timestamp=0, order_reference_number=ref,
                       cancelled_shares=shares)  # fmt: skip


def delete(ref, locate=1):
    return itch.encode("D", stock_locate=locate, tracking_number=0, timestamp=0, order_reference_number=ref)


def replace(ref, new_ref, shares, price, locate=1):
    return itch.encode("U", stock_locate=locate, tracking_number=0, timestamp=0, original_order_reference_number=ref,
                       new_order_reference_number=new_ref, shares=shares, price=price)  # fmt: skip


def trading(state, locate=1):
    return itch.encode("H", stock_locate=locate, tracking_number=0, timestamp=0, stock="T", trading_state=state,
                       reserved="", reason="")  # fmt: skip


def trade(locate=1):
    return itch.encode("P", stock_locate=locate, tracking_number=0, timestamp=0, order_reference_number=0,
                       buy_sell_indicator="B", shares=5, stock="T", price=1, match_number=3)  # fmt: skip


def run(messages, model=None, first_sequence=1):
    model = model or BookModel()
    data = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
    records = model.apply_chunk(itch_file.read_all(data), first_sequence)
    return model, records


def tops(records):
    """(sequence, locate, cause, bid p/s/n, ask p/s/n, flags) per record, for readable expectations."""
    return [(int(r["sequence"]), int(r["locate"]), r["cause"].decode(), int(r["bid_price"]), int(r["bid_shares"]),
             int(r["bid_orders"]), int(r["ask_price"]), int(r["ask_shares"]), int(r["ask_orders"]), int(r["flags"]))
            for r in records]  # fmt: skip


def test_directed_scenario():
    messages = [
        add(1, "B", 100, 10_0000),  # 1: first bid
        add(2, "B", 200, 10_0000),  # 2: joins the best bid
        add(3, "B", 300, 9_9900),  # 3: behind the best: no update
        add(4, "S", 50, 10_0100, letter="F"),  # 4: first ask
        trade(),  # 5: non-displayed trade: no update
        execute(1, 40),  # 6: partial execution at the best bid
        execute_at(1, 60, 10_0050),  # 7: order 1 fully executed (C price does not matter)
        cancel(3, 100),  # 8: partial cancel behind the best: no update
        delete(2),  # 9: best bid level gone: next level becomes best
        replace(4, 5, 70, 10_0200),  # 10: ask replaced to a new price
        trading("H"),  # 11: halt
        trading("T"),  # 12: resume
        add(6, "S", 10, 10_0300, locate=2),  # 13: another instrument
        replace(3, 7, 200, 9_9900),  # 14: U at the same price: shares same (200), orders same: no update
    ]
    _, records = run(messages)
    assert tops(records) == [
        (1, 1, "A", 10_0000, 100, 1, 0, 0, 0, 0),
        (2, 1, "A", 10_0000, 300, 2, 0, 0, 0, 0),
        (4, 1, "F", 10_0000, 300, 2, 10_0100, 50, 1, 0),
        (6, 1, "E", 10_0000, 260, 2, 10_0100, 50, 1, 0),
        (7, 1, "C", 10_0000, 200, 1, 10_0100, 50, 1, 0),
        (9, 1, "D", 9_9900, 200, 1, 10_0100, 50, 1, 0),
        (10, 1, "U", 9_9900, 200, 1, 10_0200, 70, 1, 0),
        (11, 1, "H", 9_9900, 200, 1, 10_0200, 70, 1, bbo.FLAG_HALTED),
        (12, 1, "H", 9_9900, 200, 1, 10_0200, 70, 1, 0),
        (13, 2, "A", 0, 0, 0, 10_0300, 10, 1, 0),
    ]


def test_sequence_numbers_follow_first_sequence():
    _, records = run([trade(), add(1, "S", 10, 500)], first_sequence=1000)
    assert tops(records) == [(1001, 1, "A", 0, 0, 0, 500, 10, 1, 0)]


def test_timestamp_and_reserved_bytes():
    _, records = run([add(77, "B", 1, 2)])
    assert int(records["itch_timestamp"][0]) == 77  # add() uses the ref as its timestamp
    assert int(records["card_timestamp"][0]) == 0
    raw = records.tobytes()
    assert raw[28:32] == b"\0" * 4 and raw[56:64] == b"\0" * 8


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([delete(9)], "sequence 1 .'D'.: order 9 is not on the book"),
        ([add(1, "B", 10, 5), execute(1, 11)], "sequence 2 .'E'.: cannot take 11 shares from order 1 with 10 left"),
        ([add(1, "B", 10, 5), cancel(1, 0)], "cannot take 0 shares"),
        ([add(1, "B", 10, 5), add(1, "S", 10, 6)], "sequence 2 .'A'.: order 1 is already on the book"),
        ([add(1, "B", 10, 5), delete(1, locate=2)], "order 1 is stock locate 1, not 2"),
        ([add(1, "B", 0, 5)], "adds 0 shares"),
        ([add(1, "B", 10, 5), replace(1, 1, 10, 5), replace(1, 2, 10, 5), replace(7, 8, 1, 1)], "sequence 4"),
    ],
)
def test_impossible_input_is_refused(messages, match):
    with pytest.raises(BookError, match=match):
        run(messages)


def test_bad_side_is_refused_with_its_sequence():
    bad = bytearray(add(2, "B", 10, 5))
    bad[itch.MESSAGES["A"].by_name["buy_sell_indicator"].offset] = ord("Q")
    with pytest.raises(BookError, match=r"sequence 501 \('A'\): buy/sell indicator b'Q' is neither B nor S"):
        run([add(1, "B", 10, 5), bytes(bad)], first_sequence=500)


def test_lenient_skips_and_counts_unknown_orders_only():
    model, records = run([delete(9), add(1, "B", 10, 5), execute(8, 1), delete(1)], BookModel(lenient=True))
    assert model.skipped_unknown_order == 2
    assert [r[0] for r in tops(records)] == [2, 4]
    with pytest.raises(BookError, match="cannot take 11"):
        run([add(1, "B", 10, 5), execute(1, 11)], BookModel(lenient=True))


# --- brute force: after every message, recompute the top of book from the live orders alone --------------


@st.composite
def order_flow(draw):
    """A valid random message stream over 2 instruments with few price levels (so tops change often)."""
    live: dict[int, tuple[int, str, int, int]] = {}  # ref -> (locate, side, price, shares)
    next_ref = 1
    messages = []
    for _ in range(draw(st.integers(1, 120))):
        choice = draw(st.integers(0, 9)) if live else 0
        if choice <= 3:
            locate, side = draw(st.sampled_from([1, 2])), draw(st.sampled_from("BS"))
            # bids at or below 100, asks above: prices cluster, book never crosses
            price = draw(st.integers(95, 100)) if side == "B" else draw(st.integers(101, 106))
            shares = draw(st.integers(1, 500))
            messages.append(add(next_ref, side, shares, price, locate, letter=draw(st.sampled_from("AF"))))
            live[next_ref] = (locate, side, price, shares)
            next_ref += 1
            continue
        ref = draw(st.sampled_from(sorted(live)))
        locate, side, price, shares = live[ref]
        if choice <= 6:
            n = draw(st.integers(1, shares))
            kind = draw(st.sampled_from("ECX"))
            messages.append(
                {"E": execute, "X": cancel}[kind](ref, n, locate) if kind != "C" else execute_at(ref, n, 1, locate)
            )
            if n == shares:
                del live[ref]
            else:
                live[ref] = (locate, side, price, shares - n)
        elif choice <= 8:
            messages.append(delete(ref, locate))
            del live[ref]
        else:
            new_price = draw(st.integers(95, 100)) if side == "B" else draw(st.integers(101, 106))
            new_shares = draw(st.integers(1, 500))
            messages.append(replace(ref, next_ref, new_shares, new_price, locate))
            del live[ref]
            live[next_ref] = (locate, side, new_price, new_shares)
            next_ref += 1
    return messages


def brute_force_tops(messages):
    """Expected records, recomputing both sides from every live order after each message."""
    orders: dict[int, list] = {}
    last: dict[int, tuple] = {}
    expected = []
    for seq, raw in enumerate(messages, start=1):
        m = itch.decode(raw)
        t = m.message_type
        if t in "AF":
            orders[m.order_reference_number] = [m.stock_locate, m.buy_sell_indicator, m.price, m.shares]
        elif t in "ECX":
            o = orders[m.order_reference_number]
            o[3] -= m.executed_shares if t in "EC" else m.cancelled_shares
            if o[3] == 0:
                del orders[m.order_reference_number]
        elif t == "D":
            del orders[m.order_reference_number]
        elif t == "U":
            old = orders.pop(m.original_order_reference_number)
            orders[m.new_order_reference_number] = [old[0], old[1], m.price, m.shares]
        locate = m.stock_locate
        top = []
        for side, pick in (("B", max), ("S", min)):
            prices = [o[2] for o in orders.values() if o[0] == locate and o[1] == side]
            if not prices:
                top += [0, 0, 0]
                continue
            best = pick(prices)
            at_best = [o[3] for o in orders.values() if o[0] == locate and o[1] == side and o[2] == best]
            top += [best, sum(at_best), len(at_best)]
        if tuple(top) != last.get(locate, (0,) * 6):
            last[locate] = tuple(top)
            expected.append((seq, locate, t, *top, 0))
    return expected


@settings(max_examples=300, deadline=None)
@given(order_flow())
def test_model_equals_brute_force(messages):
    _, records = run(messages)
    assert tops(records) == brute_force_tops(messages)


def test_chunk_boundaries_do_not_change_records(tmp_path):
    messages = [add(i, "BS"[i % 2], 100 + i, 100 - (i % 5) if i % 2 == 0 else 101 + (i % 5)) for i in range(1, 400)]
    messages += [delete(i) for i in range(1, 400, 3)]
    path = tmp_path / "f.itch"
    path.write_bytes(b"".join(len(m).to_bytes(2, "big") + m for m in messages))
    whole = BookModel().apply_chunk(itch_file.read_all(path), 1)
    model, seq, parts = BookModel(), 1, []
    for chunk in itch_file.iter_chunks(path, chunk_size=500):
        parts.append(model.apply_chunk(chunk, seq))
        seq += len(chunk)
    assert bbo.digest(parts) == bbo.digest([whole]) and len(whole) > 100
