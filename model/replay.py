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

ENGINES = ("model",)


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
    """Replay `path` through `engine`; `on_records` (if given) sees every batch of BBO records in order."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (available: {', '.join(ENGINES)})")
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
