"""Bulk ITCH decode to numpy: framing (C) plus per-type structured arrays, messages per second.

Target: at least 5M msg/s. Run: .venv/bin/python bench/bench_decode.py  (or `make bench`)
"""

from __future__ import annotations

import argparse
import sys

from common import best_of, generated_file, record

from wirebook.proto import itch_file


def frame_only(path):
    return sum(len(c) for c in itch_file.iter_chunks(path))


def frame_and_decode(path):
    n = 0
    for chunk in itch_file.iter_chunks(path):
        n += sum(len(a) for a in chunk.decode().values())
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    path = generated_file(args.symbols, args.messages, args.seed)
    size = path.stat().st_size
    frame_s, n1 = best_of(lambda: frame_only(path), args.repeat)
    decode_s, n2 = best_of(lambda: frame_and_decode(path), args.repeat)
    assert n1 == n2 == args.messages, (n1, n2)
    rows = [
        ["frame (C)", f"{frame_s:.3f}", f"{args.messages / frame_s / 1e6:.1f} M", f"{size / frame_s / 1e6:.0f}"],
        ["frame + decode to per-type numpy arrays", f"{decode_s:.3f}", f"{args.messages / decode_s / 1e6:.1f} M",
         f"{size / decode_s / 1e6:.0f}"],
    ]  # fmt: skip
    print(
        record(
            "decode",
            f"Bulk ITCH decode: {args.messages:,} generated messages ({size / 1e6:.1f} MB)",
            "make bench  (.venv/bin/python bench/bench_decode.py)",
            ["stage", "seconds", "msg/s", "MB/s"],
            rows,
            notes="Best of the runs, file read from the page cache, 64 MiB chunks. Target: at least 5M msg/s for "
            f"frame + decode: {'met' if args.messages / decode_s >= 5e6 else 'NOT met'}.",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
