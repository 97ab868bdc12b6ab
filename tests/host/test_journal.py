"""The journal on both backends: round trip, recovery of a trading scenario, kill -9, schema and config checks."""

from __future__ import annotations

import enum
import signal
import subprocess
import sys
import threading
import time

import postgres
import pytest

from wirebook.host.journal import (
    LOST_REASON,
    Event,
    EventKind,
    Fill,
    JournalConfig,
    JournalError,
    JournalSchemaError,
    Recovered,
    RecoveryError,
    open_journal,
    recover,
)
from wirebook.host.orders import OrderRequest, OrderState, RequestKind, Side, TokenAllocator
from wirebook.host.validated import ConfigError, validate_section

AAPL, MSFT = 13, 7  # stock locates


class RejectReason(enum.Enum):
    """Stands in for host.risk's reasons: the journal stores any enum's value."""

    ORDER_SIZE = "order_size"


def test_round_trip_keeps_every_field_in_order(journal_backend):
    request = OrderRequest(RequestKind.REPLACE, MSFT, Side.SELL, 2_990_000, 40, existing_token="WB000000000002")
    before = time.time_ns()
    with open_journal(journal_backend.config) as journal:
        ids = [
            journal.session("login", "SESS01", 1, detail={"user": "wb01", "nested": [1, 2.5, None]}),
            journal.order_sent("WB000000000001", AAPL, "AAPL", Side.BUY, 1_500_000, 300),
            journal.order_accepted(1, "WB000000000001", 1001, 1_500_100, 300),
            journal.order_executed(2, "WB000000000001", 100, 1_499_900, 77_001, "A"),
            journal.replace_sent("WB000000000001", "WB000000000003", 1_503_000, 200),
            journal.order_replaced(3, "WB000000000001", "WB000000000003", 1002, 1_503_000, 200),
            journal.replace_refused(4, "WB000000000003", "X"),
            journal.cancel_sent("WB000000000003", 0),
            journal.order_canceled(5, "WB000000000003", 200, "U"),
            journal.order_rejected(6, "WB000000000004", "S"),
            journal.exchange_message(7, "S", detail={"event_code": "O"}),
            journal.risk_decision(request, False, RejectReason.ORDER_SIZE, "shares 40 > 30", "WB000000000005"),
            journal.kill_switch(True, "loss limit"),
            journal.record(EventKind.SESSION, state="stop", detail="plain text"),
        ]
    after = time.time_ns()
    assert ids == list(range(1, 15))

    expected = [
        Event(1, 0, EventKind.SESSION, "SESS01", state="login", sequence=1,
              detail={"user": "wb01", "nested": [1, 2.5, None]}),
        Event(2, 0, EventKind.ORDER_SENT, "WB000000000001", AAPL, Side.BUY, 1_500_000, 300, stock="AAPL"),
        Event(3, 0, EventKind.ORDER_ACCEPTED, "WB000000000001", price=1_500_100, shares=300, sequence=1,
              reference=1001),
        Event(4, 0, EventKind.ORDER_EXECUTED, "WB000000000001", price=1_499_900, shares=100, reason="A", sequence=2,
              reference=77_001),
        Event(5, 0, EventKind.REPLACE_SENT, "WB000000000001", price=1_503_000, shares=200,
              other_token="WB000000000003"),
        Event(6, 0, EventKind.ORDER_REPLACED, "WB000000000001", price=1_503_000, shares=200, sequence=3, reference=1002,
              other_token="WB000000000003"),
        Event(7, 0, EventKind.REPLACE_REFUSED, "WB000000000003", reason="X", sequence=4),
        Event(8, 0, EventKind.CANCEL_SENT, "WB000000000003", shares=0),
        Event(9, 0, EventKind.ORDER_CANCELED, "WB000000000003", shares=200, reason="U", sequence=5),
        Event(10, 0, EventKind.ORDER_REJECTED, "WB000000000004", reason="S", sequence=6),
        Event(11, 0, EventKind.EXCHANGE_MESSAGE, state="S", sequence=7, detail={"event_code": "O"}),
        Event(12, 0, EventKind.RISK_DECISION, "WB000000000005", MSFT, Side.SELL, 2_990_000, 40, "rejected",
              "order_size", other_token="WB000000000002", detail=["replace", "shares 40 > 30"]),
        Event(13, 0, EventKind.KILL_SWITCH, state="engaged", reason="loss limit"),
        Event(14, 0, EventKind.SESSION, state="stop", detail="plain text"),
    ]  # fmt: skip

    with open_journal(journal_backend.config) as journal:  # reopened: what is read is what the database holds
        read = list(journal.events())
        stamps = [event.ts_ns for event in read]
        assert [event._replace(ts_ns=0) for event in read] == expected
        assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= after
        assert [event.event_id for event in journal.events(after=12)] == [13, 14]
        assert journal.cancel_sent("WB000000000001") == 15  # ids continue after a reopen
        assert [event.event_id for event in journal.events(after=14)] == [15]


def record_scenario(journal, tokens: TokenAllocator) -> dict[str, str]:
    """A morning of trading, journaled as the gateway would; ends with WB6 sent and never answered (a crash)."""
    t = {n: tokens.allocate() for n in range(1, 7)}
    new = OrderRequest(RequestKind.NEW, AAPL, Side.BUY, 1_500_000, 300)
    journal.session("start")
    journal.session("login", "SESS01", 1)
    journal.risk_decision(new, accepted=True, token=t[1])
    journal.order_sent(t[1], AAPL, "AAPL", Side.BUY, 1_500_000, 300)
    journal.order_accepted(1, t[1], 1001, 1_500_000, 300)
    journal.order_executed(2, t[1], 100, 1_500_000, 5001, "A")  # partial: 200 open
    journal.replace_sent(t[1], t[2], 1_503_000, 200)
    journal.order_replaced(3, t[1], t[2], 1002, 1_503_000, 200)
    journal.order_executed(4, t[2], 50, 1_503_000, 5002, "A")  # WB2: 150 open
    too_big = OrderRequest(RequestKind.NEW, AAPL, Side.BUY, 1_500_000, 5_000_000)
    journal.risk_decision(too_big, False, "order_size", "shares 5000000 > 1000")
    journal.order_sent(t[3], MSFT, "MSFT", Side.SELL, 3_000_000, 100)
    journal.order_accepted(5, t[3], 1003, 3_000_000, 100)
    journal.cancel_sent(t[3])
    journal.order_canceled(6, t[3], 100, "U")
    journal.risk_decision(too_big, False, "order_size", "shares 5000000 > 1000")
    journal.risk_decision(OrderRequest(RequestKind.NEW, MSFT, Side.BUY, 9_000_000, 10), False, "price_collar")
    journal.order_sent(t[4], MSFT, "MSFT", Side.BUY, 2_990_000, 50)
    journal.order_rejected(7, t[4], "S")
    journal.order_sent(t[5], AAPL, "AAPL", Side.SELL, 1_510_000, 120)
    journal.order_accepted(8, t[5], 1005, 1_510_000, 120)
    journal.order_executed(9, t[5], 120, 1_510_000, 5003, "R")  # sells 120 of the 150 bought
    journal.exchange_message(10, "S", detail={"event_code": "Q"})
    journal.kill_switch(True, "operator")
    journal.kill_switch(False, "operator")
    journal.kill_switch(True, "loss limit")
    journal.cancel_sent(t[2])  # the cancel of WB2 is in flight...
    journal.order_sent(t[6], AAPL, "AAPL", Side.BUY, 1_499_000, 100)  # ...and WB6 too, when the agent dies
    return {f"WB{n}": token for n, token in t.items()}


def test_recovery_rebuilds_the_agents_state(journal_backend):
    with open_journal(journal_backend.config) as journal:
        t = record_scenario(journal, TokenAllocator("WB"))
    with open_journal(journal_backend.config) as journal:
        recovered = recover(journal)

    orders = recovered.orders
    assert {o.token for o in orders.open_orders()} == {t["WB2"], t["WB6"]}
    wb2 = orders.get(t["WB2"])
    assert (wb2.state, wb2.price, wb2.shares, wb2.open_shares, wb2.filled_shares) == (
        OrderState.PARTIALLY_FILLED, 1_503_000, 200, 150, 50)  # fmt: skip
    assert (wb2.reference, wb2.replaces, wb2.cancel_pending, wb2.locate, wb2.side) == (
        1002, t["WB1"], True, AAPL, Side.BUY)  # fmt: skip
    wb6 = orders.get(t["WB6"])
    assert (wb6.state, wb6.open_shares, wb6.price, wb6.stock) == (OrderState.PENDING, 100, 1_499_000, "AAPL")
    done = {
        name: (orders.get(t[name]).state, orders.get(t[name]).filled_shares) for name in ("WB1", "WB3", "WB4", "WB5")
    }
    assert done == {
        "WB1": (OrderState.REPLACED, 100),
        "WB3": (OrderState.CANCELED, 0),
        "WB4": (OrderState.REJECTED, 0),
        "WB5": (OrderState.FILLED, 120),
    }
    # AAPL: bought 100 @ 150.0000 and 50 @ 150.3000 (average 150.1000), sold 120 @ 151.0000:
    # realized (1_510_000 - 1_501_000) * 120 = 1_080_000; 30 left at 150.1000. MSFT never traded.
    positions = recovered.positions()
    assert [(b.locate, b.position, b.cost, b.realized) for b in positions.instruments.values()] == [
        (AAPL, 30, 30 * 1_501_000, 1_080_000)
    ]
    assert [(f.token, f.locate, f.side, f.price, f.shares, f.match_number, f.sequence) for f in recovered.fills] == [
        (t["WB1"], AAPL, Side.BUY, 1_500_000, 100, 5001, 2),
        (t["WB2"], AAPL, Side.BUY, 1_503_000, 50, 5002, 4),
        (t["WB5"], AAPL, Side.SELL, 1_510_000, 120, 5003, 9),
    ]
    assert all(isinstance(f, Fill) for f in recovered.fills)
    assert (recovered.session, recovered.last_sequence) == ("SESS01", 10)
    assert recovered.next_token_number("WB") == 7
    assert recovered.token_allocator("WB").allocate() == "WB000000000007"
    assert (recovered.kill_switch_engaged, recovered.kill_switch_reason) == (True, "loss limit")
    assert recovered.risk_rejects == {"order_size": 2, "price_collar": 1}
    assert recovered.last_event_id == 27  # the 27 calls of record_scenario


def test_recovered_orders_converge_with_the_exchange_replay(journal_backend):
    """After re-login from last_sequence + 1 the gateway journals each replayed message and applies it."""
    with open_journal(journal_backend.config) as journal:
        t = record_scenario(journal, TokenAllocator("WB"))
        recovered = recover(journal)
        t["WB7"] = recovered.token_allocator("WB").allocate()
        journal.order_sent(t["WB7"], MSFT, "MSFT", Side.SELL, 3_010_000, 25)  # sent, then the socket died

        # the replay after re-login, overlapping the journal by one message (seq 9 is already applied)
        journal.session("login", "SESS01", 9)
        journal.order_executed(9, t["WB5"], 120, 1_510_000, 5003, "R")
        journal.order_canceled(11, t["WB2"], 150, "U")  # the in-flight cancel did arrive
        journal.order_accepted(12, t["WB6"], 1006, 1_499_000, 100)  # and so did WB6
        journal.order_executed(13, t["WB6"], 40, 1_499_000, 5004, "A")
        # two orders whose order_sent was still queued at the crash (lost) while their bytes reached the exchange
        lost_accepted, lost_rejected = "WB000000000020", "WB000000000021"
        journal.order_accepted(14, lost_accepted, 1020, 1_520_000, 60, Side.SELL, AAPL, "AAPL")
        journal.order_rejected(15, lost_rejected, "S")
        applied = [recovered.apply(event) for event in journal.events(after=recovered.last_event_id)]
        assert applied == [True, True, False, True, True, True, True, True]  # dup 9 skipped

        assert recovered.unacknowledged() == [recovered.orders.get(t["WB7"])]
        settled = recovered.settle_unacknowledged(journal)  # caught up: WB7 never reached the exchange
        assert [o.token for o in settled] == [t["WB7"]]

    orders = recovered.orders
    assert [o.token for o in orders.open_orders()] == [t["WB6"], lost_accepted]
    adopted = orders.get(lost_accepted)
    assert (adopted.state, adopted.side, adopted.locate, adopted.stock, adopted.price, adopted.open_shares) == (
        OrderState.ACCEPTED, Side.SELL, AAPL, "AAPL", 1_520_000, 60)  # fmt: skip
    assert lost_rejected not in orders
    states = {name: orders.get(token).state for name, token in t.items()}
    assert states == {
        "WB1": OrderState.REPLACED,
        "WB2": OrderState.CANCELED,
        "WB3": OrderState.CANCELED,
        "WB4": OrderState.REJECTED,
        "WB5": OrderState.FILLED,
        "WB6": OrderState.PARTIALLY_FILLED,
        "WB7": OrderState.REJECTED,
    }
    assert (orders.get(t["WB6"]).open_shares, recovered.last_sequence) == (60, 15)
    assert recovered.next_token_number("WB") == 22  # past the rejected token the journal had lost
    # AAPL: 30 @ 150.1000 plus 40 @ 149.9000 -> 70 @ (30 * 1_501_000 + 40 * 1_499_000) / 70
    book = recovered.positions().get(AAPL)
    assert (book.position, book.cost, book.realized) == (70, 30 * 1_501_000 + 40 * 1_499_000, 1_080_000)

    with open_journal(journal_backend.config) as journal:  # the journal alone now says the same
        again = recover(journal)
    assert {token: o.state for token, o in again.orders.orders.items()} == {
        token: o.state for token, o in orders.orders.items()
    }
    assert again.fills == recovered.fills
    assert (again.last_sequence, again.next_token_number("WB")) == (15, 22)
    assert [e.reason for e in journaled(journal_backend.config, EventKind.ORDER_REJECTED)] == ["S", "S", LOST_REASON]


def journaled(config: JournalConfig, kind: EventKind) -> list[Event]:
    with open_journal(config) as journal:
        return [event for event in journal.events() if event.kind is kind]


WRITER_SCRIPT = """
import sys
from wirebook.host.journal import JournalConfig, open_journal
from wirebook.host.orders import Side

journal = open_journal(JournalConfig.model_validate_json(sys.argv[1]))
n = 0
while True:
    for _ in range(50):
        n += 1
        token = f"K{n:013d}"
        journal.order_sent(token, n % 7 + 1, "AAPL", Side.BUY if n % 2 else Side.SELL, 1_000_000 + n, n)
        journal.order_accepted(n, token, 10 * n, 1_000_000 + n, n)
    journal.flush()
    print(n, flush=True)  # orders 1..n (events 1..2n) are committed
"""


def expected_kill_event(event_id: int) -> Event:
    """What the writer script journals as event `event_id`: order n sent (2n - 1), then accepted (2n)."""
    n = (event_id + 1) // 2
    token = f"K{n:013d}"
    if event_id % 2:
        return Event(event_id, 0, EventKind.ORDER_SENT, token, n % 7 + 1, Side.BUY if n % 2 else Side.SELL,
                     1_000_000 + n, n, stock="AAPL")  # fmt: skip
    return Event(
        event_id, 0, EventKind.ORDER_ACCEPTED, token, price=1_000_000 + n, shares=n, sequence=n, reference=10 * n
    )


def test_kill_9_loses_nothing_flushed(journal_backend, tmp_path):
    config = journal_backend.with_(batch_size=64, flush_interval=0.001)
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), config.model_dump_json()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    flushed = 0
    try:
        deadline = time.monotonic() + 30
        while flushed < 3000 and time.monotonic() < deadline:  # let it run for 60+ flushed batches
            line = child.stdout.readline()
            if not line:
                break
            flushed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)  # mid-run: the writer is recording, or inside a transaction
        rest, errors = child.communicate(timeout=10)
    assert flushed >= 3000, f"the writer script did not get going: {errors}"
    assert child.returncode == -signal.SIGKILL
    flushed = max([flushed, *map(int, rest.split())])  # progress printed before the kill, not yet read

    if journal_backend.name == "sqlite":
        assert journal_backend.execute("PRAGMA integrity_check") == [("ok",)]
    with open_journal(config) as journal:
        events = list(journal.events())
        last = len(events)
        assert last >= 2 * flushed  # everything flushed is there...
        assert [e._replace(ts_ns=0) for e in events] == [expected_kill_event(i) for i in range(1, last + 1)]
        # ...in order, gap-free, each event whole; what was after the last commit is simply absent

        recovered = recover(journal)
        assert len(recovered.orders) == (last + 1) // 2
        assert recovered.orders.open_count == (last + 1) // 2  # all accepted or pending, none done
        assert recovered.last_sequence == last // 2
        assert recovered.next_token_number("K") == (last + 1) // 2 + 1
        assert journal.session("restart") == last + 1  # appending after the kill works
    with open_journal(config) as journal:
        assert [e.event_id for e in journal.events(after=last)] == [last + 1]


TORN_SCRIPT = """
import sys, time
from wirebook.host.journal import JournalConfig, open_journal

config = JournalConfig.model_validate_json(sys.argv[1])
journal = open_journal(config)
for n in range(10):
    journal.session("tick", sequence=n)
journal.flush()


def torn(rows):  # the batch's rows go in, then the agent dies before COMMIT
    connection = journal._connection
    if config.backend == "sqlite":
        connection.execute("BEGIN")
        connection.executemany(journal._insert_sql(), rows)
    else:
        connection.cursor().executemany(journal._insert_sql(), rows)
    print("inside the transaction", flush=True)
    time.sleep(60)


journal._write_batch = torn
for n in range(10, 20):
    journal.session("tick", sequence=n)
journal.flush()
"""


def test_kill_9_inside_a_transaction_leaves_no_trace(journal_backend, tmp_path):
    script = tmp_path / "torn.py"
    script.write_text(TORN_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), journal_backend.config.model_dump_json()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = child.stdout.readline()
    finally:
        child.send_signal(signal.SIGKILL)
        _, errors = child.communicate(timeout=10)
    assert said == "inside the transaction\n", errors

    if journal_backend.name == "sqlite":
        assert journal_backend.execute("PRAGMA integrity_check") == [("ok",)]
    with open_journal(journal_backend.config) as journal:
        assert [e.sequence for e in journal.events()] == list(range(10))  # the torn batch is absent as a whole
        assert journal.session("restart") == 11
        assert [e.state for e in journal.events(after=9)] == ["tick", "restart"]


def test_unknown_schema_version_is_refused(journal_backend):
    open_journal(journal_backend.config).close()
    journal_backend.execute("UPDATE journal_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(JournalSchemaError, match=r"schema version '99', expected '1'"):
        open_journal(journal_backend.config)
    journal_backend.execute("DROP TABLE journal_meta")
    with pytest.raises(JournalSchemaError, match="without journal_meta"):
        open_journal(journal_backend.config)


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"backend": "mysql"}, "journal.backend: Input should be 'sqlite' or 'postgresql', got 'mysql'"),
        ({"backend": "postgresql"}, "journal.conninfo: Value error, backend 'postgresql' needs a conninfo"),
        ({"batch_size": 0}, "journal.batch_size: Input should be greater than 0, got 0"),
        ({"flush_interval": -1}, "journal.flush_interval: Input should be greater than 0, got -1"),
        ({"synchronous": "off"}, "journal.synchronous: Input should be 'normal' or 'full', got 'off'"),
        ({"pth": "j.db"}, "journal.pth: Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_refused_naming_the_field(section, says):
    with pytest.raises(ConfigError) as refused:
        validate_section(JournalConfig, section, "agent.toml", "journal")
    assert says in str(refused.value)


def test_record_does_no_io(journal_backend):
    """record() only queues: it returns while the writer thread is stuck inside a database write."""
    with open_journal(journal_backend.config.model_copy(update={"flush_interval": 0.001})) as journal:
        writing, release = threading.Event(), threading.Event()
        write_batch = journal._write_batch

        def stuck(rows):
            writing.set()
            assert release.wait(20)
            write_batch(rows)

        journal._write_batch = stuck
        journal.session("start")
        assert writing.wait(5), "the writer never started a write"
        started = time.perf_counter()
        for n in range(20_000):
            journal.order_sent(f"T{n:013d}", AAPL, "AAPL", Side.BUY, 1_500_000, 100)
        took = time.perf_counter() - started
        assert journal.queued == 20_000  # all still in memory...
        assert list(journal.events(flush=False)) == []  # ...none in the database
        assert took < 1.0, f"20,000 record() calls took {took:.2f} s while the writer was blocked"
        release.set()
        journal.flush()
        assert journal.queued == 0
        assert sum(1 for _ in journal.events()) == 20_001


def test_a_failed_writer_stops_the_journal(journal_backend):
    journal = open_journal(journal_backend.config)

    def broken(rows):
        raise OSError("disk full")

    journal._write_batch = broken
    journal.session("start")
    with pytest.raises(JournalError, match="writer failed.*disk full"):
        journal.flush()
    with pytest.raises(JournalError, match="writer failed.*disk full"):
        journal.session("stop")
    with pytest.raises(JournalError, match="disk full"):
        journal.close()
    with pytest.raises(JournalError, match="disk full"):
        journal.session("stop")


def test_sqlite_is_wal_with_the_configured_synchronous(tmp_path):
    for mode, level in (("normal", 1), ("full", 2)):
        path = tmp_path / f"{mode}.sqlite3"
        with open_journal(JournalConfig(path=path, synchronous=mode)) as journal:
            assert journal._connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert journal._connection.execute("PRAGMA synchronous").fetchone() == (level,)
    with pytest.raises(JournalError, match=r"no-such-folder/j\.sqlite3: cannot open"):
        open_journal(JournalConfig(path=tmp_path / "no-such-folder" / "j.sqlite3"))


def test_postgresql_maps_synchronous_to_synchronous_commit(postgres_server):
    conninfo = postgres_server.create_database("journal_synchronous")
    for mode, setting in (("normal", "off"), ("full", "on")):
        with open_journal(JournalConfig(backend="postgresql", conninfo=conninfo, synchronous=mode)) as journal:
            assert journal._connection.execute("SHOW synchronous_commit").fetchone() == (setting,)


def test_replay_skips_duplicates_restarts_numbering_per_session_and_refuses_the_impossible():
    sent = Event(1, 0, EventKind.ORDER_SENT, "A1", AAPL, Side.BUY, 1_000_000, 10, stock="AAPL")
    recovered = Recovered.from_events(
        [
            Event(0, 0, EventKind.SESSION, "DAY1", state="login", sequence=1),
            sent,
            Event(2, 0, EventKind.ORDER_ACCEPTED, "A1", price=1_000_000, shares=10, sequence=5, reference=9),
        ]
    )
    assert not recovered.apply(Event(3, 0, EventKind.ORDER_CANCELED, "A1", shares=10, sequence=5))  # seen
    assert recovered.orders.get("A1").state is OrderState.ACCEPTED
    assert recovered.apply(Event(4, 0, EventKind.SESSION, "DAY2", state="login", sequence=1))
    assert (recovered.session, recovered.last_sequence) == ("DAY2", 0)  # a new session counts from 1 again
    assert recovered.apply(Event(5, 0, EventKind.ORDER_CANCELED, "A1", shares=10, sequence=1))
    assert recovered.orders.get("A1").state is OrderState.CANCELED
    with pytest.raises(RecoveryError, match=r"event 6 \(order_executed, token 'A1', sequence 2\).*executed in state"):
        recovered.apply(Event(6, 0, EventKind.ORDER_EXECUTED, "A1", price=1_000_000, shares=5, sequence=2))
    with pytest.raises(RecoveryError, match=r"event 7 \(order_accepted, token 'B9'.*no order with token 'B9'"):
        recovered.apply(Event(7, 0, EventKind.ORDER_ACCEPTED, "B9", price=1, shares=1, sequence=3))


def test_missing_postgresql_is_a_failure_that_says_what_to_install(monkeypatch):
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    with pytest.raises(postgres.PostgresMissing, match=r"initdb, pg_ctl, postgres not found.*'postgresql' package"):
        postgres.find_binaries()
