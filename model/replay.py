"""Replay an ITCH file or a MoldUDP64 pcap through a book engine and summarise what came out.

The summary is what `wirebook replay --json` prints and what every engine (the golden model now, the
simulated card later) must reproduce: message counts per type, the number of BBO update records, the
SHA-256 of those records in canonical form (wirebook.proto.bbo.canonical_bytes) and the final top of book.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..proto import bbo, itch, itch_file, pcap
from .book import BookModel

ENGINES = ("model", "sim")


@dataclass
class ReplaySummary:
    source: str  # "itch" or "pcap"
    framing: str  # "strict" or "tolerant" (ITCH length fields)
    messages: dict[str, int]
    bbo_updates: int
    bbo_sha256: str
    final_bbo: dict[str, dict[str, int]]
    first_sequence: int = 1
    skipped_unknown_order: int = 0
    feed: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def detect_source(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    return "pcap" if pcap.is_pcap(head) else "itch"


def detect_framing(path: str | os.PathLike) -> str:
    """'tolerant' when the file's first length field is empty (writers such as RITCH's), else 'strict'."""
    with open(path, "rb") as f:
        head = f.read(2)
    return "tolerant" if head == b"\0\0" else "strict"


@dataclass
class Source:
    """A message stream opened from an ITCH file or a feed pcap."""

    kind: str  # "itch" or "pcap"
    framing: str  # "strict" or "tolerant"
    first_sequence: int  # sequence number of the first message
    chunks: Iterator[itch_file.Chunk]
    feed_counters: Callable[[], dict] = dict  # pcap only, final once chunks is exhausted: frames, duplicates, ...


def open_source(
    path: str | os.PathLike, *, framing: str = "auto", chunk_size: int = itch_file.DEFAULT_CHUNK_SIZE
) -> Source:
    """Open an ITCH file (framing auto-detected unless given) or a MoldUDP64 feed pcap."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if detect_source(path) == "pcap":
        from ..sim import feed

        reader = feed.read_feed_pcap(path)
        return Source("pcap", "strict", 1, _feed_chunks(reader, chunk_size), lambda: _counters_dict(reader.counters))
    if framing == "auto":
        framing = detect_framing(path)
    if framing not in ("strict", "tolerant"):
        raise ValueError(f"framing must be auto, strict or tolerant, got {framing!r}")
    chunks = itch_file.iter_chunks(path, tolerant=framing == "tolerant", chunk_size=chunk_size)
    return Source("itch", framing, 1, chunks)


def _feed_chunks(reader, chunk_size: int) -> Iterator[itch_file.Chunk]:
    """The line handler's in-sequence message runs, gathered into framed chunks of about chunk_size bytes."""
    pending: list[bytes] = []
    size = index = 0

    def flush() -> itch_file.Chunk:
        buffer = np.frombuffer(b"".join(pending), dtype=np.uint8)
        offsets, types, _ = itch_file.frame(buffer)
        pending.clear()
        return itch_file.Chunk(buffer, offsets, types, 0, index)

    for _sequence, run in reader.iter_runs():
        pending.append(run)
        size += len(run)
        if size >= chunk_size:
            chunk = flush()
            yield chunk
            index += len(chunk)
            size = 0
    if pending:
        yield flush()


def _counters_dict(counters) -> dict:
    out = asdict(counters)
    out["end_of_session_seen"] = counters.end_of_session_seen
    return out


def replay(
    path: str | os.PathLike,
    *,
    engine: str = "model",
    framing: str = "auto",
    lenient: bool = False,
    chunk_size: int = itch_file.DEFAULT_CHUNK_SIZE,
    on_records: Callable[[np.ndarray], None] | None = None,
) -> ReplaySummary:
    """Replay `path` through `engine`; `on_records` (if given) sees every batch of BBO records in order.

    Engines: "model" (the golden model) and "sim" (the FeedHandler gateware in Verilator; an ITCH file is
    first published as the dual-line feed pcap). Both must give the same records, so the same bbo_sha256.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (available: {', '.join(ENGINES)})")
    if engine == "sim":
        return _replay_sim(path, framing=framing, on_records=on_records)
    source = open_source(path, framing=framing, chunk_size=chunk_size)
    model = BookModel(lenient=lenient)
    digest = bbo.Digest()
    counts = np.zeros(256, dtype=np.int64)
    sequence = source.first_sequence
    for chunk in source.chunks:
        counts += np.bincount(chunk.types, minlength=256)
        records = model.apply_chunk(chunk, sequence)
        sequence += len(chunk)
        digest.update(records)
        if on_records is not None:
            on_records(records)
    return ReplaySummary(
        source=source.kind,
        framing=source.framing,
        messages={t: int(counts[ord(t)]) for t in itch.TYPES},
        bbo_updates=digest.count,
        bbo_sha256=digest.hexdigest(),
        final_bbo=model.final_bbo(),
        first_sequence=source.first_sequence,
        skipped_unknown_order=model.skipped_unknown_order,
        feed=source.feed_counters(),
    )


def _replay_sim(
    path: str | os.PathLike, *, framing: str, on_records: Callable[[np.ndarray], None] | None
) -> ReplaySummary:
    """The simulated card's replay: its records, and its own counters for the message and feed counts.

    The card always skips messages about orders it does not hold (the model's --lenient); their number
    is the card's unknown_order counter.
    """
    import tempfile

    from ..sim import card_sim, feed

    kind = detect_source(path)
    with tempfile.TemporaryDirectory(prefix="wirebook-sim-") as folder:
        pcap_path = Path(path)
        if kind == "itch":
            if (detect_framing(path) if framing == "auto" else framing) != "strict":
                raise ValueError(f"{path}: the sim engine publishes strictly framed ITCH files only")
            pcap_path = Path(folder) / "feed.pcap"
            feed.write_feed_pcap(path, pcap_path, **feed.DENSE_FEED)
        run = card_sim.run_card(pcap_path)
    records = run.records
    if on_records is not None:
        on_records(records)
    counters = run.report["counters"]
    digest = bbo.Digest()
    digest.update(records)
    symbols = _symbols(path, framing)  # names for the summary, read from the same file by software
    return ReplaySummary(
        source=kind,
        framing="strict",
        messages=dict(zip(itch.TYPES, counters["messages_by_type"])),
        bbo_updates=digest.count,
        bbo_sha256=digest.hexdigest(),
        final_bbo=final_bbo(records, symbols),
        skipped_unknown_order=counters["unknown_order"],
        feed={name: counters[name] for name in _CARD_FEED_COUNTERS},
    )


_CARD_FEED_COUNTERS = ("frames_a", "frames_b", "packets_accepted_a", "packets_accepted_b", "messages_accepted",
                       "duplicates", "gaps", "missing_messages")  # fmt: skip


def _symbols(path: str | os.PathLike, framing: str) -> dict[int, str]:
    symbols: dict[int, str] = {}
    for chunk in open_source(path, framing=framing).chunks:
        for row in itch.decode_bulk(chunk.buffer, chunk.offsets, chunk.types, only="R").get("R", ()):
            symbols[int(row["stock_locate"])] = row["stock"].decode("ascii").rstrip()
    return symbols


def final_bbo(records: np.ndarray, symbols: dict[int, str]) -> dict[str, dict[str, int]]:
    """Instrument -> its last record's top of book, for every instrument with a record, by locate."""
    locates, from_end = np.unique(records["locate"][::-1], return_index=True)
    out = {}
    for locate, at in zip(locates.tolist(), (len(records) - 1 - from_end).tolist()):
        r = records[at]
        out[symbols.get(locate, str(locate))] = {"locate": locate, **{f: int(r[f]) for f in bbo.TOP_FIELDS},
                                                 "flags": int(r["flags"])}  # fmt: skip
    return out
