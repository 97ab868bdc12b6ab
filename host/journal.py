"""The agent's journal: an append-only audit trail of every order event, risk decision and fill, with recovery.

Hot path and writer
    The agent's thread calls the typed methods (`order_sent`, `order_accepted`, `order_executed`,
    `risk_decision`, ...). Each one takes the next event id, reads the wall clock and appends one tuple to an
    in-memory queue: no I/O, no formatting, no lock beyond the deque's own. A writer thread drains the queue
    every `flush_interval` seconds (or as soon as `batch_size` events wait) and writes at most `batch_size`
    events per database transaction. `flush()` returns once everything queued before it is committed;
    `close()` flushes and stops the writer. Enums, JSON and everything else that costs are done by the writer.
    If the writer fails (disk full, database gone) the journal refuses every later call with `JournalError`:
    an agent that cannot journal must stop trading, never carry on unrecorded.

Storage
    One `events` table, one row per event, in event id order, plus `journal_meta` holding the schema version.
    SQLite (the default) runs in WAL mode with `synchronous=NORMAL` (a commit survives the agent's crash; the
    last commits may roll back on an OS crash or power loss) or FULL (every commit is fsynced). PostgreSQL
    (psycopg 3) maps the same setting to `synchronous_commit` off / on, with the same meaning. A journal whose
    schema version this code does not know is refused at open, never written to.

Columns (NULL where a kind has nothing to say)

    event_id     monotonically increasing, gap-free; the replay order (ids of events lost in a crash, never
                 durable, are given again after the restart)
    ts_ns        wall clock, ns since the Unix epoch, taken on the hot path
    kind         an `EventKind` value
    token        order token (order kinds, risk decisions); session name (session)
    locate       ITCH stock locate of the order or request (order_accepted: optional, see the crash contract)
    side         "B" / "S" (order_sent, risk_decision; order_accepted: optional)
    price        Price(4): order / replace / accepted / execution price
    shares       order / replace / accepted size; executed shares; canceled: the decrement
    state        risk_decision: "accepted" / "rejected"; kill_switch: "engaged" / "released";
                 session: what happened ("start", "login", "logout", "stop", ...); exchange_message: its type
    reason       reject / cancel reason; risk rule; kill-switch reason; executed: the liquidity flag
    sequence     the SoupBinTCP sequence number of the exchange message (session login: the next one)
    reference    exchange order reference number (accepted, replaced); match number (executed)
    other_token  replace_sent / order_replaced: the replacement token; risk_decision: the existing order
    stock        the stock symbol of an order sent (or accepted, see the crash contract)
    detail       JSON: anything else (`risk_decision`: [request kind, explanation]; free-form on session events)

Crash contract with the gateway: journal first, then send
    Events queued but not yet flushed when the agent dies (e.g. `kill -9`) are lost; a batch whose
    transaction had not committed is absent as a whole. What survives is always a prefix of the events in id
    order, never a partial event. That is safe when the gateway keeps this order:
    1. `order_sent` / `cancel_sent` / `replace_sent` are called BEFORE the message's bytes are written to the
       exchange socket, so in id order a request always precedes the exchange's answer to it: a surviving
       prefix never holds an answer to a request it does not hold, and replays without error.
    2. Every exchange answer is journaled with its SoupBinTCP sequence number. On restart `recover` gives
       `last_sequence`; the gateway logs in asking for `last_sequence + 1` and the exchange replays every
       answer the lost tail held. The gateway journals each replayed message as it would live, and
       `Recovered.apply` folds it in (skipping sequence numbers already seen).
    3. An order whose `order_sent` was lost but whose bytes reached the exchange comes back in the replay as
       an Accepted carrying token, side, shares, stock and price: pass `side`, `locate` and `stock` to
       `order_accepted` and `Recovered.apply` adopts the order (its token is burned for the allocator too);
       a Rejected for a token the journal lost only burns the token.
    4. An order journaled as sent that the exchange never received is still PENDING once the replay has
       caught up; `Recovered.settle_unacknowledged` closes it (journaled as rejected).
    So an order on the exchange is never unknown to the agent after the replay. To need neither 3 nor the
    replay for a given order, `flush()` before its bytes go out (one commit of latency).

Recovery
    `recover(journal)` replays every event in id order through the same `OwnOrders` methods the gateway
    uses (no transition is re-implemented here) and rebuilds: the orders (open and done), the fills in
    order, a simple position per locate, the last exchange sequence number, the next free token number, the
    kill-switch latch and the risk-reject counts by rule. An event the state machine refuses is a
    `RecoveryError` naming the event: a journal that does not replay means the state is unknown.
"""

from __future__ import annotations

import atexit
import enum
import itertools
import json
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field, ValidationInfo, field_validator

from .market import MarketView
from .orders import Order, OrderRequest, OrderState, OrderStateError, OwnOrders, Side, TokenAllocator
from .positions import Positions
from .validated import ConfigModel

__all__ = [
    "LOST_REASON",
    "SCHEMA_VERSION",
    "Event",
    "EventKind",
    "Fill",
    "Journal",
    "JournalConfig",
    "JournalError",
    "JournalSchemaError",
    "NullJournal",
    "PostgresJournal",
    "Recovered",
    "RecoveryError",
    "SqliteJournal",
    "open_journal",
    "recover",
]

SCHEMA_VERSION = 1
"""The `events` layout this code writes and reads; a journal with another version is refused at open."""

LOST_REASON = "not received by the exchange"
"""The reason journaled for an order (or replace) sent before a crash that the exchange's replay never saw."""


class JournalError(RuntimeError):
    """The journal cannot be opened, written or read; the message says which journal and what failed."""


class JournalSchemaError(JournalError):
    """The database holds a journal of a schema version this code does not know (or no version at all)."""


class RecoveryError(JournalError):
    """A journaled event that the order state machine refuses, or that recovery cannot read."""


class EventKind(enum.Enum):
    """What an event records; the value is what the `kind` column holds."""

    SESSION = "session"
    ORDER_SENT = "order_sent"
    CANCEL_SENT = "cancel_sent"
    REPLACE_SENT = "replace_sent"
    ORDER_ACCEPTED = "order_accepted"
    ORDER_REJECTED = "order_rejected"
    ORDER_EXECUTED = "order_executed"
    ORDER_CANCELED = "order_canceled"
    ORDER_REPLACED = "order_replaced"
    REPLACE_REFUSED = "replace_refused"
    EXCHANGE_MESSAGE = "exchange_message"
    RISK_DECISION = "risk_decision"
    KILL_SWITCH = "kill_switch"


class Event(NamedTuple):
    """One journaled event as read back (and as `Recovered.apply` takes it); fields are the table's columns."""

    event_id: int
    ts_ns: int
    kind: EventKind
    token: str | None = None
    locate: int | None = None
    side: Side | None = None
    price: int | None = None
    shares: int | None = None
    state: str | None = None
    reason: str | None = None
    sequence: int | None = None
    reference: int | None = None
    other_token: str | None = None
    stock: str | None = None
    detail: Any = None


COLUMNS = Event._fields

# --- configuration ---------------------------------------------------------------------------------------


class JournalConfig(ConfigModel):
    """The `[journal]` section of the agent's configuration."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    path: Path = Path("journal.sqlite3")
    """SQLite: the database file (its folder must exist); ignored for PostgreSQL."""
    conninfo: str = Field("", validate_default=True)
    """PostgreSQL: a libpq connection string or URI (`host=/run/postgresql dbname=wirebook`); required then."""
    batch_size: int = Field(1000, gt=0, le=100_000)
    """Most events written in one transaction."""
    flush_interval: float = Field(0.005, gt=0, le=10)
    """Seconds the writer waits for more events before writing what is queued."""
    synchronous: Literal["normal", "full"] = "normal"
    """normal: a commit survives the agent's crash; full: it survives an OS crash or power loss too."""

    @field_validator("conninfo")
    @classmethod
    def _conninfo_for_postgresql(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("backend") == "postgresql" and not value.strip():
            raise ValueError("backend 'postgresql' needs a conninfo (e.g. 'host=/run/postgresql dbname=wirebook')")
        return value


def open_journal(config: JournalConfig) -> Journal:
    """The journal `config` describes, open (schema created if absent, version checked) and its writer running."""
    if config.backend == "sqlite":
        return SqliteJournal(config)
    return PostgresJournal(config)


# --- the journal -----------------------------------------------------------------------------------------

_STOP = object()
N = None  # a NULL column in the typed methods' positional calls


class Journal:
    """Append-only event journal: typed hot-path methods queue events, a writer thread commits them in batches.

    Thread model: the typed methods may be called from any thread (event ids are unique and increasing per
    caller; the agent calls them from its one loop thread, so ids follow the order of the calls). `flush`,
    `events` and `close` block; call them off the hot path. Use a backend through `open_journal`.
    """

    name: str  # the journal's location, for error messages (a path or host/dbname, never a password)

    def __init__(self, config: JournalConfig) -> None:
        self.config = config
        self._batch_size = config.batch_size
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._refusing = False  # set when closed or the writer failed: the hot path's one check
        self._failure: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()  # serialises close(); never taken on the hot path
        self._connection = self._connect(for_writer=True)
        try:
            last = self._prepare_schema()
        except BaseException:
            self._connection.close()
            raise
        self._ids = itertools.count(last + 1)
        self._insert = self._insert_sql()
        self._writer = threading.Thread(target=self._run, name=f"journal-writer {self.name}", daemon=True)
        self._writer.start()
        atexit.register(self.close)  # the writer is a daemon: make a forgotten close() still flush at exit

    # --- hot path ----------------------------------------------------------------------------------------

    def record(
        self,
        kind: EventKind,
        token: str | None = None,
        locate: int | None = None,
        side: Side | None = None,
        price: int | None = None,
        shares: int | None = None,
        state: str | enum.Enum | None = None,
        reason: str | enum.Enum | None = None,
        sequence: int | None = None,
        reference: int | None = None,
        other_token: str | None = None,
        stock: str | None = None,
        detail: Any = None,
    ) -> int:
        """Queue one event and return its id; no I/O. The typed methods below are the usual way in.

        `detail` must not be mutated after the call (it is serialised later, by the writer); it is stored as
        JSON, values JSON cannot hold as their `str()`; an enum `state` or `reason` is stored as its value.
        Raises `JournalError` once the journal is closed or its writer failed.
        """
        if self._refusing:
            self._refuse()
        event_id = next(self._ids)
        queue = self._queue
        queue.append(
            (event_id, time.time_ns(), kind, token, locate, side, price, shares, state, reason, sequence, reference,
             other_token, stock, detail)
        )  # fmt: skip
        if len(queue) == self._batch_size:
            self._wake.set()
        return event_id

    # The typed methods call record() positionally, columns in order (N for NULL): a keyword call costs three
    # times as much. What the agent sends: journal these BEFORE writing the message to the exchange socket.

    def order_sent(self, token: str, locate: int, stock: str, side: Side, price: int, shares: int) -> int:
        """An Enter Order about to be sent (replayed as `OwnOrders.sent_new`)."""
        return self.record(EventKind.ORDER_SENT, token, locate, side, price, shares, N, N, N, N, N, stock)

    def cancel_sent(self, token: str, shares: int = 0) -> int:
        """A Cancel Order about to be sent; `shares` is its intended remaining size (0: cancel all)."""
        return self.record(EventKind.CANCEL_SENT, token, N, N, N, shares)

    def replace_sent(self, token: str, replacement: str, price: int, shares: int) -> int:
        """A Replace Order about to be sent: `token` replaced by `replacement` at `price` for `shares`."""
        return self.record(EventKind.REPLACE_SENT, token, N, N, price, shares, N, N, N, N, replacement)

    # What the exchange said: `sequence` is the SoupBinTCP sequence number of the message (None: not sequenced).

    def order_accepted(
        self,
        sequence: int | None,
        token: str,
        reference: int,
        price: int,
        shares: int,
        side: Side | None = None,
        locate: int | None = None,
        stock: str | None = None,
    ) -> int:
        """Accepted; `side`, `locate`, `stock` (from the message) let recovery adopt an order whose sending was lost."""
        return self.record(EventKind.ORDER_ACCEPTED, token, locate, side, price, shares, N, N, sequence, reference,
                           N, stock)  # fmt: skip

    def order_rejected(self, sequence: int | None, token: str, reason: str) -> int:
        return self.record(EventKind.ORDER_REJECTED, token, N, N, N, N, N, reason, sequence)

    def order_executed(
        self, sequence: int | None, token: str, shares: int, price: int, match_number: int, liquidity: str = ""
    ) -> int:
        """A fill: `shares` executed at `price` (Price(4)); side and locate are the order's."""
        return self.record(EventKind.ORDER_EXECUTED, token, N, N, price, shares, N, liquidity, sequence, match_number)

    def order_canceled(self, sequence: int | None, token: str, decrement: int, reason: str) -> int:
        return self.record(EventKind.ORDER_CANCELED, token, N, N, N, decrement, N, reason, sequence)

    def order_replaced(
        self, sequence: int | None, previous: str, replacement: str, reference: int, price: int, shares: int
    ) -> int:
        return self.record(EventKind.ORDER_REPLACED, previous, N, N, price, shares, N, N, sequence, reference,
                           replacement)  # fmt: skip

    def replace_refused(self, sequence: int | None, token: str, reason: str) -> int:
        """A Replace Order the exchange did not act on (or that never reached it)."""
        return self.record(EventKind.REPLACE_REFUSED, token, N, N, N, N, N, reason, sequence)

    def exchange_message(self, sequence: int, message_type: str, detail: Any = None) -> int:
        """Any other sequenced message (system event, broken trade, cancel reject...): keeps the sequence."""
        return self.record(EventKind.EXCHANGE_MESSAGE, N, N, N, N, N, message_type, N, sequence, N, N, N, detail)

    # The agent's own decisions.

    def risk_decision(
        self,
        request: OrderRequest,
        accepted: bool,
        reason: str | enum.Enum | None = None,
        explanation: str = "",
        token: str | None = None,
    ) -> int:
        """The risk engine's verdict on `request`, e.g. from `RiskEngine.on_decision`:
        `journal.risk_decision(request, decision.accepted, decision.reason, decision.detail, token)`.

        `reason` is the rule that refused it (a `RejectReason` or its value), `explanation` the engine's words
        (limit, value), `token` the order token if one was allocated. Stored: state "accepted" / "rejected",
        reason the rule's value, detail `[request kind, explanation]`.
        """
        return self.record(EventKind.RISK_DECISION, token, request.locate, request.side, request.price,
                           request.shares, "accepted" if accepted else "rejected", reason, N, N,
                           request.existing_token or N, N, (request.kind.value, explanation))  # fmt: skip

    def kill_switch(self, engaged: bool, reason: str) -> int:
        """The kill switch latched (`engaged`) or released by an operator."""
        return self.record(EventKind.KILL_SWITCH, N, N, N, N, N, "engaged" if engaged else "released", reason)

    def session(self, event: str, session: str = "", sequence: int | None = None, detail: Any = None) -> int:
        """A session event: "start", "login" (`session` name, `sequence` the next one), "logout", "stop"..."""
        return self.record(EventKind.SESSION, session or N, N, N, N, N, event, N, sequence, N, N, N, detail)

    # --- off the hot path --------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Events (and flush requests) queued, not yet handed to the database: the writer's backlog."""
        return len(self._queue)

    def flush(self, timeout: float | None = None) -> None:
        """Return once every event queued before this call is committed; JournalError if not (within `timeout`)."""
        self._raise_failure()
        if self._closed:
            return
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.05):
            if not self._writer.is_alive():
                break
            if deadline is not None and time.monotonic() > deadline:
                raise JournalError(f"journal {self.name}: flush not done within {timeout} s ({self.queued} queued)")
        self._raise_failure()
        if not done.is_set():
            raise JournalError(f"journal {self.name}: writer stopped before the flush was done")

    def close(self) -> None:
        """Flush, stop the writer and close the database; idempotent. Raises JournalError if the flush failed."""
        with self._lock:
            if self._closed:
                return
            atexit.unregister(self.close)
            self._refusing = True  # from now on record() raises instead of queueing behind the stop
            try:
                if self._failure is None:
                    self._queue.append(_STOP)
                    self._wake.set()
                self._writer.join()
            finally:
                self._closed = True
                self._refusing = True
                self._connection.close()
        self._raise_failure()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def events(self, after: int = 0, *, flush: bool = True) -> Iterator[Event]:
        """The committed events with id greater than `after`, in id order (flushed first unless `flush=False`).

        Reads through a connection of its own, so it may run while the writer writes.
        """
        if flush and not self._closed:
            self.flush()
        return self._read(after)

    # --- the writer thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        queue, batch_size, interval = self._queue, self._batch_size, self.config.flush_interval
        stopping = False
        try:
            while not stopping:
                self._wake.wait(interval)
                self._wake.clear()
                while queue and not stopping:
                    rows, done = [], []
                    while queue and len(rows) < batch_size:
                        item = queue.popleft()
                        if type(item) is tuple:
                            rows.append(item)
                        elif item is _STOP:
                            stopping = True
                            break
                        else:
                            done.append(item)
                    if rows:
                        self._write_batch([self._to_row(item) for item in rows])
                    for flushed in done:
                        flushed.set()
        except BaseException as e:  # handed to every caller from now on: flush, record and close raise it
            self._failure = e
            self._refusing = True
            while queue:  # wake every flush waiting: they raise the failure
                item = queue.popleft()
                if isinstance(item, threading.Event):
                    item.set()

    def _to_row(self, item: tuple) -> tuple:
        try:
            (event_id, ts_ns, kind, token, locate, side, price, shares, state, reason, sequence, reference,
             other_token, stock, detail) = item  # fmt: skip
            return (
                event_id, ts_ns, kind.value, token, locate, None if side is None else side.value, price, shares,
                _text(state), _text(reason), sequence, reference, other_token, stock,
                None if detail is None else json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str),
            )  # fmt: skip
        except Exception as e:
            raise JournalError(
                f"journal {self.name}: event {item[0]} ({item[2]!r}) cannot be stored: {e}; expected the types of "
                "Journal.record's parameters"
            ) from e

    def _refuse(self) -> None:
        self._raise_failure()
        raise JournalError(f"journal {self.name} is closed: no event can be recorded")

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise JournalError(f"journal {self.name}: writer failed, events since the last flush are lost: "
                               f"{self._failure}") from self._failure  # fmt: skip

    # --- schema ------------------------------------------------------------------------------------------

    _PARAM = "?"  # the driver's placeholder

    def _prepare_schema(self) -> int:
        """Create the tables if absent or check their version; return the last event id stored (0: none)."""
        if self._table_exists("journal_meta"):
            rows = self._query("SELECT value FROM journal_meta WHERE key = 'schema_version'")
            found = rows[0][0] if rows else None
            if found != str(SCHEMA_VERSION):
                raise JournalSchemaError(
                    f"journal {self.name}: schema version {found!r}, expected '{SCHEMA_VERSION}': written by another "
                    "version of wirebook; refusing to read or append to it"
                )
        elif self._table_exists("events"):
            raise JournalSchemaError(
                f"journal {self.name}: an events table without journal_meta (no schema version), expected a "
                f"wirebook journal of schema version {SCHEMA_VERSION}; refusing to read or append to it"
            )
        else:
            self._create_schema()
        return self._query("SELECT COALESCE(MAX(event_id), 0) FROM events")[0][0]

    def _insert_sql(self) -> str:
        marks = ", ".join([self._PARAM] * len(COLUMNS))
        return f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({marks})"

    def _select_sql(self) -> str:
        return f"SELECT {', '.join(COLUMNS)} FROM events WHERE event_id > {self._PARAM} ORDER BY event_id"

    def _event(self, row: tuple) -> Event:
        try:
            kind = EventKind(row[2])
            side = None if row[5] is None else Side(row[5])
            detail = None if row[14] is None else json.loads(row[14])
        except ValueError as e:
            raise RecoveryError(f"journal {self.name}: event {row[0]} cannot be read: {e}") from e
        return Event(row[0], row[1], kind, row[3], row[4], side, *row[6:14], detail)

    # --- backend interface -------------------------------------------------------------------------------

    def _connect(self, for_writer: bool) -> Any:
        raise NotImplementedError

    def _table_exists(self, table: str) -> bool:
        raise NotImplementedError

    def _query(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def _create_schema(self) -> None:
        raise NotImplementedError

    def _write_batch(self, rows: list[tuple]) -> None:
        raise NotImplementedError

    def _read(self, after: int) -> Iterator[Event]:
        raise NotImplementedError


def _text(value: Any) -> Any:
    """An enum (e.g. risk's RejectReason) as its value; anything else unchanged."""
    return value.value if isinstance(value, enum.Enum) else value


_EVENTS_DDL = """
CREATE TABLE events (
    event_id    {int64} PRIMARY KEY,
    ts_ns       {int64} NOT NULL,
    kind        TEXT NOT NULL,
    token       TEXT,
    locate      INTEGER,
    side        TEXT CHECK (side IN ('B', 'S')),
    price       {int64},
    shares      {int64},
    state       TEXT,
    reason      TEXT,
    sequence    {int64},
    reference   {int64},
    other_token TEXT,
    stock       TEXT,
    detail      TEXT
)"""

_SCHEMA = (
    "CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    _EVENTS_DDL,
    # an order's history, and the replacement side of a replace
    "CREATE INDEX events_token ON events (token, event_id)",
    "CREATE INDEX events_other_token ON events (other_token, event_id) WHERE other_token IS NOT NULL",
    # every fill, every risk reject, the last sequence number
    "CREATE INDEX events_kind ON events (kind, event_id)",
    "CREATE INDEX events_sequence ON events (sequence) WHERE sequence IS NOT NULL",
    f"INSERT INTO journal_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')",
)


class SqliteJournal(Journal):
    """The journal in one SQLite file, WAL mode; readers never block the writer."""

    def __init__(self, config: JournalConfig) -> None:
        self.name = str(config.path)
        super().__init__(config)

    def _connect(self, for_writer: bool) -> sqlite3.Connection:
        try:
            # isolation_level=None: transactions are the explicit BEGIN/COMMIT below, nothing implicit
            connection = sqlite3.connect(self.config.path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout = 10000")
            if for_writer:
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise JournalError(f"journal {self.name}: SQLite journal_mode is {mode!r}, expected 'wal'")
                connection.execute(f"PRAGMA synchronous = {self.config.synchronous.upper()}")
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.name}: cannot open the SQLite database: {e}") from e
        return connection

    def _table_exists(self, table: str) -> bool:
        found = self._connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return found.fetchone() is not None

    def _query(self, sql: str) -> list[tuple]:
        return self._connection.execute(sql).fetchall()

    def _create_schema(self) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                connection.execute(statement.format(int64="INTEGER"))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _write_batch(self, rows: list[tuple]) -> None:
        connection = self._connection
        connection.execute("BEGIN")
        try:
            connection.executemany(self._insert, rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _read(self, after: int) -> Iterator[Event]:
        connection = self._connect(for_writer=False)
        try:
            for row in connection.execute(self._select_sql(), (after,)):
                yield self._event(row)
        finally:
            connection.close()


class PostgresJournal(Journal):
    """The journal in a PostgreSQL database (psycopg 3), tables in the connection's default schema."""

    _PARAM = "%s"

    def __init__(self, config: JournalConfig) -> None:
        import psycopg  # the PostgreSQL backend is optional: SQLite-only agents need not install psycopg

        self._psycopg = psycopg
        try:
            where = psycopg.conninfo.conninfo_to_dict(config.conninfo)
        except psycopg.Error as e:
            raise JournalError(f"journal.conninfo: not a PostgreSQL connection string: {e}") from e
        self.name = f"postgresql {where.get('host', '(default host)')}/{where.get('dbname', '(default database)')}"
        super().__init__(config)

    def _connect(self, for_writer: bool) -> Any:
        psycopg = self._psycopg
        try:
            connection = psycopg.connect(self.config.conninfo, application_name="wirebook-journal")
            # the same promise as SQLite's setting: normal survives the agent's crash, full a power loss too
            synchronous = "on" if self.config.synchronous == "full" else "off"
            connection.execute(f"SET synchronous_commit = {synchronous}")
            connection.commit()
        except psycopg.Error as e:
            raise JournalError(f"journal {self.name}: cannot connect: {e}") from e
        return connection

    def _table_exists(self, table: str) -> bool:
        found = self._connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        self._connection.commit()
        return bool(found)

    def _query(self, sql: str) -> list[tuple]:
        rows = self._connection.execute(sql).fetchall()
        self._connection.commit()
        return rows

    def _create_schema(self) -> None:
        with self._connection.transaction():
            for statement in _SCHEMA:
                self._connection.execute(statement.format(int64="BIGINT"))

    def _write_batch(self, rows: list[tuple]) -> None:
        with self._connection.transaction(), self._connection.cursor() as cursor:
            cursor.executemany(self._insert, rows)

    def _read(self, after: int) -> Iterator[Event]:
        connection = self._connect(for_writer=False)
        try:
            # a server-side cursor: a day's journal need not fit in memory twice
            with connection.transaction(), connection.cursor(name="journal_events") as cursor:
                cursor.itersize = 10_000
                cursor.execute(self._select_sql(), (after,))
                for row in cursor:
                    yield self._event(row)
        finally:
            connection.close()


# --- recovery --------------------------------------------------------------------------------------------


class Fill(NamedTuple):
    """One execution of one of our orders, as journaled: the raw input of the positions module."""

    event_id: int
    ts_ns: int
    token: str
    locate: int
    side: Side
    price: int  # Price(4)
    shares: int
    match_number: int | None
    sequence: int | None


@dataclass
class Recovered:
    """The agent's state rebuilt from a journal; `apply` folds one more event (journaled or replayed) into it."""

    orders: OwnOrders = field(default_factory=OwnOrders)
    fills: list[Fill] = field(default_factory=list)
    last_sequence: int = 0  # of the last exchange message seen in the current session; 0: none
    session: str = ""  # SoupBinTCP session of the last login
    kill_switch_engaged: bool = False
    kill_switch_reason: str = ""
    risk_rejects: Counter[str] = field(default_factory=Counter)
    last_event_id: int = 0
    tokens: set[str] = field(default_factory=set)  # every token ever sent, replacements included

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> Recovered:
        """The state `events` (in id order) rebuild from nothing; RecoveryError at the first that does not replay."""
        recovered = cls()
        for event in events:
            recovered.apply(event)
        return recovered

    def apply(self, event: Event) -> bool:
        """Fold `event` in; False if it is an exchange message already seen (sequence <= last_sequence).

        Exchange events replayed after re-login go through here too: the replay may overlap the journal, the
        duplicates are skipped. RecoveryError if the order state machine refuses the event.
        """
        kind = event.kind
        if event.sequence is not None and kind in _SEQUENCED:
            if event.sequence <= self.last_sequence:
                return False
            self.last_sequence = event.sequence
        try:
            _APPLY[kind](self, event)
        except (OrderStateError, KeyError) as e:
            raise RecoveryError(
                f"event {event.event_id} ({kind.value}, token {event.token!r}, sequence {event.sequence}) does not "
                f"replay: {e}"
            ) from e
        self.last_event_id = max(self.last_event_id, event.event_id)
        return True

    def positions(self, market: MarketView | None = None) -> Positions:
        """Positions and P&L rebuilt from the fills (host.positions), marked to `market` when given."""
        return Positions.from_fills(self.fills, market)

    def next_token_number(self, prefix: str) -> int:
        """The first counter value after every token with `prefix` ever sent (1 if none)."""
        allocator = TokenAllocator(prefix)
        numbers = [n for n in map(allocator.number_of, self.tokens) if n is not None]
        return max(numbers, default=0) + 1

    def token_allocator(self, prefix: str) -> TokenAllocator:
        """A TokenAllocator that never repeats a token of this journal."""
        return TokenAllocator(prefix, self.next_token_number(prefix))

    def unacknowledged(self) -> list[Order]:
        """Orders sent that the exchange has not answered yet (PENDING)."""
        return [order for order in self.orders.open_orders() if order.state is OrderState.PENDING]

    def settle_unacknowledged(self, journal: Journal) -> list[Order]:
        """Close what the exchange never received, journaled; call once the re-login replay has caught up.

        Once the exchange's replay has reached the sequence number its Login Accepted announced, an order
        still PENDING never reached it (its answer would be in the replay): it is journaled and applied as
        rejected (`LOST_REASON`), and a Replace in flight whose replacement never appeared as refused. Orders
        still `cancel_pending` are left as they are: the agent sends the cancel again. Returns the orders
        changed.
        """
        changed = []
        for order in self.orders.open_orders():
            if order.state is OrderState.PENDING:
                journal.order_rejected(None, order.token, LOST_REASON)
                changed.append(self.orders.rejected(order.token))
            elif order.replacement and order.replacement not in self.orders:
                journal.replace_refused(None, order.token, LOST_REASON)
                changed.append(self.orders.replace_refused(order.token))
        return changed

    # --- one fold per kind -------------------------------------------------------------------------------

    def _session(self, e: Event) -> None:
        if e.state == "login" and e.token and e.token != self.session:
            self.session = e.token  # a new session numbers its messages from 1 again
            self.last_sequence = 0

    def _order_sent(self, e: Event) -> None:
        self.tokens.add(e.token)
        self.orders.sent_new(e.token, e.locate, e.stock or "", e.side, e.price, e.shares)

    def _cancel_sent(self, e: Event) -> None:
        self.orders.sent_cancel(e.token)

    def _replace_sent(self, e: Event) -> None:
        self.tokens.add(e.other_token)
        self.orders.sent_replace(e.token, e.other_token, e.shares or 0)

    def _accepted(self, e: Event) -> None:
        if e.token not in self.orders and e.side is not None and e.locate is not None:
            # sent before the crash, its order_sent lost with the tail: adopt it as the exchange describes it
            self.tokens.add(e.token)
            self.orders.sent_new(e.token, e.locate, e.stock or "", e.side, e.price, e.shares)
        self.orders.accepted(e.token, e.reference or 0, e.price, e.shares)

    def _rejected(self, e: Event) -> None:
        if e.token not in self.orders:  # its order_sent lost with the tail: nothing is live, the token is burned
            self.tokens.add(e.token)
            return
        self.orders.rejected(e.token)

    def _executed(self, e: Event) -> None:
        order = self.orders.executed(e.token, e.shares)
        self.fills.append(
            Fill(e.event_id, e.ts_ns, order.token, order.locate, order.side, e.price, e.shares, e.reference, e.sequence)
        )

    def _canceled(self, e: Event) -> None:
        self.orders.canceled(e.token, e.shares)

    def _replaced(self, e: Event) -> None:
        self.tokens.add(e.other_token)
        self.orders.replaced(e.token, e.other_token, e.reference or 0, e.price, e.shares)

    def _replace_refused(self, e: Event) -> None:
        self.orders.replace_refused(e.token)

    def _nothing(self, e: Event) -> None:
        pass  # an exchange message that changes no order: only its sequence number counts

    def _risk_decision(self, e: Event) -> None:
        if e.token:
            self.tokens.add(e.token)
        if e.state == "rejected":
            self.risk_rejects[e.reason or ""] += 1

    def _kill_switch(self, e: Event) -> None:
        self.kill_switch_engaged = e.state == "engaged"
        self.kill_switch_reason = e.reason or ""


_APPLY = {
    EventKind.SESSION: Recovered._session,
    EventKind.ORDER_SENT: Recovered._order_sent,
    EventKind.CANCEL_SENT: Recovered._cancel_sent,
    EventKind.REPLACE_SENT: Recovered._replace_sent,
    EventKind.ORDER_ACCEPTED: Recovered._accepted,
    EventKind.ORDER_REJECTED: Recovered._rejected,
    EventKind.ORDER_EXECUTED: Recovered._executed,
    EventKind.ORDER_CANCELED: Recovered._canceled,
    EventKind.ORDER_REPLACED: Recovered._replaced,
    EventKind.REPLACE_REFUSED: Recovered._replace_refused,
    EventKind.EXCHANGE_MESSAGE: Recovered._nothing,
    EventKind.RISK_DECISION: Recovered._risk_decision,
    EventKind.KILL_SWITCH: Recovered._kill_switch,
}
assert set(_APPLY) == set(EventKind), "every event kind needs a fold"

_SEQUENCED = frozenset(
    {
        EventKind.ORDER_ACCEPTED,
        EventKind.ORDER_REJECTED,
        EventKind.ORDER_EXECUTED,
        EventKind.ORDER_CANCELED,
        EventKind.ORDER_REPLACED,
        EventKind.REPLACE_REFUSED,
        EventKind.EXCHANGE_MESSAGE,
    }
)
"""The exchange's messages: their sequence numbers advance `last_sequence` and make replays idempotent."""


def _nothing(*args: Any, **kwargs: Any) -> int:
    return 0


class NullJournal:
    """The recording methods of a Journal that record nothing: for a gateway or risk engine used alone."""

    order_sent = cancel_sent = replace_sent = staticmethod(_nothing)
    order_accepted = order_rejected = order_executed = order_canceled = staticmethod(_nothing)
    order_replaced = replace_refused = exchange_message = staticmethod(_nothing)
    risk_decision = kill_switch = session = staticmethod(_nothing)


def recover(journal: Journal) -> Recovered:
    """The state every committed event of `journal` rebuilds (queued events are flushed first)."""
    return Recovered.from_events(journal.events())
