"""The `wirebook` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .display import format_message, format_price
from .model.replay import ENGINES


def _cmd_gen(args: argparse.Namespace) -> int:
    from .sim import market

    summary = market.write_itch(args.output, symbols=args.symbols, messages=args.messages, seed=args.seed)
    print(f"wrote {args.output}: {summary['messages']} messages, {summary['symbols']} symbols, seed {args.seed}")
    if args.pcap:
        from .sim import feed

        f = feed.write_feed_pcap(args.output, args.pcap, seed=args.seed)
        print(
            f"wrote {args.pcap}: session {f['session']}, {f['packets']} data packets "
            f"({f['messages'] / max(f['packets'], 1):.1f} messages each), {f['heartbeats']} heartbeats, "
            f"end of session, each on lines A and B: {f['frames']} frames"
        )
    if args.verbose:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from .model.replay import replay

    summary = replay(args.file, engine=args.engine, framing=args.framing, lenient=args.lenient)
    if args.json:
        print(json.dumps(summary.to_json(), sort_keys=True))
        return 0
    total = sum(summary.messages.values())
    print(f"{args.file}: {summary.source}, {summary.framing} framing, {total} messages")
    print("messages: " + "  ".join(f"{t} {n}" for t, n in summary.messages.items() if n))
    if summary.skipped_unknown_order:
        print(f"skipped (order not on the book, --lenient): {summary.skipped_unknown_order}")
    print(f"BBO updates: {summary.bbo_updates}   sha256 {summary.bbo_sha256}")
    shown = list(summary.final_bbo.items())
    print(f"final top of book ({len(shown)} instruments{', first ' + str(args.top) if len(shown) > args.top else ''}):")
    print(f"  {'instrument':<10} {'bid':>24}   {'ask':<24} flags")
    for name, top in shown[: args.top]:
        bid = (
            f"{top['bid_shares']} ({top['bid_orders']}) @ {format_price(top['bid_price'])}"
            if top["bid_orders"]
            else "-"
        )
        ask = (
            f"{format_price(top['ask_price'])} x {top['ask_shares']} ({top['ask_orders']})"
            if top["ask_orders"]
            else "-"
        )
        print(f"  {name:<10} {bid:>24}   {ask:<24} {top['flags']}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .model.replay import open_source
    from .proto import itch

    only = set(args.type) if args.type else None
    source = open_source(args.file, framing=args.framing)
    shown = 0
    sequence = source.first_sequence
    for chunk in source.chunks:
        for i, at in enumerate(chunk.offsets.tolist()):
            seq = sequence + i
            if seq < args.start or (only is not None and chr(chunk.types[i]) not in only):
                continue
            message = itch.decode(chunk.buffer, at)
            where = f"@{chunk.file_offset + at - 2}" if source.kind == "itch" else ""
            print(f"{seq:>10} {where:>12} {format_message(message)}")
            shown += 1
            if shown >= args.limit:
                return 0
        sequence += len(chunk)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wirebook",
        description="wirebook: ITCH 5.0 feed handler appliance — market generator, golden book model, gateware, host "
        "agent, exchange simulator, tools.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("gen", help="generate a deterministic synthetic market (ITCH file, optional feed pcap)")
    g.add_argument("--symbols", type=int, default=20, help="number of instruments (default 20)")
    g.add_argument("--messages", type=int, default=100_000, help="exact number of ITCH messages (default 100000)")
    g.add_argument("--seed", type=int, default=1, help="random seed; same seed, same bytes (default 1)")
    g.add_argument("-o", "--output", type=Path, required=True, help="ITCH binary file to write")
    g.add_argument("--pcap", type=Path, help="also write the feed as MoldUDP64 multicast packets (A and B lines)")
    g.add_argument("-v", "--verbose", action="store_true", help="print the generator's summary")
    g.set_defaults(func=_cmd_gen)

    framing_help = (
        "ITCH length fields: strict (must equal the type's length), tolerant (0 allowed, e.g. RITCH files), "
        "auto (tolerant when the first length field is 0; default)"
    )
    r = sub.add_parser("replay", help="replay an ITCH file or a MoldUDP64 pcap through a book engine")
    r.add_argument("file", type=Path, help="ITCH binary file or pcap of the MoldUDP64 feed")
    r.add_argument(
        "--engine",
        choices=ENGINES,
        default="model",
        help="book engine: model (the golden model, default) or sim (the gateware in Verilator)",
    )
    r.add_argument("--framing", choices=["auto", "strict", "tolerant"], default="auto", help=framing_help)
    r.add_argument(
        "--lenient", action="store_true",
        help="skip (and count) messages about orders the book does not hold, e.g. a file sampled or started "
        "mid-day; by default they are an error",
    )  # fmt: skip
    r.add_argument("--json", action="store_true", help="print one JSON object (messages, bbo_updates, bbo_sha256, "
                   "final_bbo, ...)")  # fmt: skip
    r.add_argument("--top", type=int, default=20, help="instruments shown in the text summary (default 20)")
    r.set_defaults(func=_cmd_replay)

    i = sub.add_parser("inspect", help="print the messages of an ITCH file or feed pcap readably")
    i.add_argument("file", type=Path)
    i.add_argument("--framing", choices=["auto", "strict", "tolerant"], default="auto", help=framing_help)
    i.add_argument("--start", type=int, default=1, help="first sequence number to show (default 1)")
    i.add_argument("--limit", type=int, default=50, help="messages to show (default 50)")
    i.add_argument("--type", action="append", help="only this message type letter (repeatable)")
    i.set_defaults(func=_cmd_inspect)

    h = sub.add_parser("hdl", help="the card's gateware: Verilog and register map")
    hsub = h.add_subparsers(dest="hdl_command", required=True)
    v = hsub.add_parser("verilog", help="write the FeedHandler core as Verilog (top module feed_handler)")
    _add_core_arguments(v)
    v.add_argument("-o", "--output", type=Path, required=True, help="Verilog file to write")
    v.set_defaults(func=_cmd_hdl_verilog)
    regs = hsub.add_parser("registers", help="print the register map (Markdown, as docs/registers.md)")
    regs.set_defaults(func=_cmd_hdl_registers)

    a = sub.add_parser(
        "agent", help="the host agent: BBO from the card -> strategy -> risk -> OUCH (runs until SIGTERM)"
    )
    a.add_argument("--config", type=Path, required=True, help="the agent's TOML file (deploy/agent.example.toml)")
    a.add_argument("--card", choices=["model", "sim", "pynq", "net"], default="model",
                   help="card backend: model (the golden model), sim (the gateware in Verilator) or pynq (a Zynq "
                   "board's overlay, [card] pynq_bitfile), fed in look-aside mode from the [feed] MoldUDP64 "
                   "address; net (a card inline on the wire, reached at [card] net_card). The [card] section sets "
                   "them up")  # fmt: skip
    a.add_argument("--cpu", type=int, help="pin the agent to this CPU (overrides [agent] cpu)")
    a.add_argument("--seconds", type=float, help="stop after this long (default: run until SIGINT/SIGTERM)")
    a.add_argument("--json", action="store_true", help="print the run's summary as one JSON object at exit")
    a.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    a.set_defaults(func=_cmd_agent)

    rn = sub.add_parser("run", help="the main job: exchange simulator + feed + card + agent, live view and summary")
    rn.add_argument("--seconds", type=float, default=30.0, help="how long to trade (default 30)")
    rn.add_argument("--symbols", type=int, default=20, help="instruments in the generated market (default 20)")
    rn.add_argument("--messages", type=int, default=200_000, help="ITCH messages of the market (default 200000)")
    rn.add_argument("--seed", type=int, default=1)
    rn.add_argument("--rate", default="20000", help="feed pace: messages per second, max, realtime[:K] (default 20000)")
    rn.add_argument("--workdir", type=Path, default=Path("out/run"), help="journal folder (default out/run)")
    rn.add_argument("--card", choices=["sim", "model"], default="sim",
                    help="sim: the gateware's Verilog in Verilator (default; built once, about a minute, and "
                    "cached in out/sim); model: the golden model")  # fmt: skip
    rn.add_argument("--json", action="store_true", help="no live view: print one JSON object (orders_sent, fills, "
                    "risk_rejects, kill_switch, position, pnl, tick_to_order_us, ...)")  # fmt: skip
    rn.set_defaults(func=_cmd_run)

    from .sim import exchange

    x = sub.add_parser("exchange", help="exchange simulator: OUCH 4.2 over SoupBinTCP, and the market as MoldUDP64")
    exchange.build_parser(x)
    x.set_defaults(func=lambda args: exchange.run_exchange(args=args))

    d = sub.add_parser("doctor", help="check this machine for bare-metal use: isolated cores, hugepages, NIC, clock")
    d.add_argument("--cpu", type=int, help="the core the agent will be pinned to")
    d.add_argument("--json", action="store_true", help="print the checks as a JSON list")
    d.set_defaults(func=_cmd_doctor)

    hw = sub.add_parser("hw", help="boards and bitstreams: list, build (open tools or a Vivado plan), flash")
    hwsub = hw.add_subparsers(dest="hw_command", required=True)
    hb = hwsub.add_parser("boards", help="the boards wirebook builds for")
    hb.add_argument("--json", action="store_true")
    hb.set_defaults(func=_cmd_hw_boards)
    hbuild = hwsub.add_parser("build", help="build a board's bitstream (ECP5: YoWASP; PYNQ-Z2: Vivado, or its plan)")
    hbuild.add_argument("--board", required=True, help="a name from `wirebook hw boards`")
    hbuild.add_argument("--folder", type=Path, help="build folder (default out/hw/BOARD)")
    hbuild.add_argument("--json", action="store_true", help="print one JSON object: bitstream, Fmax per clock, "
                        "timing met, utilisation")  # fmt: skip
    hbuild.set_defaults(func=_cmd_hw_build)
    hflash = hwsub.add_parser("flash", help="load the built bitstream into the attached board (openFPGALoader)")
    hflash.add_argument("--board", required=True)
    hflash.add_argument("--folder", type=Path, help="build folder (default out/hw/BOARD)")
    hflash.set_defaults(func=_cmd_hw_flash)

    b = sub.add_parser("bench", help="measurements recorded in bench/results")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    bg = bsub.add_parser("gateware", help="latency (cycles), line-rate throughput, ECP5/xc7 resources and Fmax")
    bg.add_argument("--widths", default="8,32,64", help="data widths to measure (default 8,32,64)")
    bg.add_argument("--messages", type=int, default=20_000, help="messages of the simulated market (default 20000)")
    bg.add_argument("--no-synthesis", action="store_true", help="skip yosys / nextpnr (simulation numbers only)")
    bg.add_argument("--no-route", action="store_true", help="Fmax from nextpnr's estimate after placement")
    bg.add_argument("--json", action="store_true", help="print one JSON object")
    bg.set_defaults(func=_cmd_bench_gateware)
    return p


def _add_core_arguments(parser: argparse.ArgumentParser) -> None:
    from .hdl.stream import DATA_WIDTHS

    parser.add_argument("--data-width", type=int, choices=DATA_WIDTHS, default=64, help="bits per beat (default 64)")
    parser.add_argument("--instruments", type=int, default=64, help="instrument slots (default 64)")
    parser.add_argument("--orders", type=int, default=16384, help="order-table entries (default 16384)")
    parser.add_argument("--levels", type=int, default=16, help="price levels held per side (default 16)")


def _cmd_hdl_verilog(args: argparse.Namespace) -> int:
    from .hdl.feed_handler import write_verilog

    path = write_verilog(args.output, data_width=args.data_width, n_instruments=args.instruments,
                         n_orders=args.orders, n_levels=args.levels)  # fmt: skip
    print(path)
    return 0


def _cmd_hdl_registers(args: argparse.Namespace) -> int:
    from .proto import registers

    print(registers.markdown(), end="")
    return 0


def _cmd_agent(args: argparse.Namespace) -> int:
    import logging

    from .driver.card import CardError, open_card
    from .driver.feed_input import SocketFeed
    from .host.agent import Agent
    from .host.config import load_config
    from .host.validated import ConfigError

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"wirebook agent: {e}", file=sys.stderr)
        return 2
    if args.cpu is not None:
        config.agent.cpu = args.cpu
    feed = SocketFeed(config.feed.address, config.feed.port, config.feed.interface, card_mac=config.card.local_mac)
    setup = config.card
    if "groups" not in setup.model_fields_set:  # the card takes what the host receives
        setup = setup.model_copy(update={"groups": [feed.destination]})
    try:
        card = open_card(args.card, setup, instruments=config.agent.instruments, **setup.backend_options(args.card))
    except (CardError, RuntimeError, OSError) as e:  # the card or its link (DPDK, sockets) is not usable
        feed.close()
        print(f"wirebook agent: {e}", file=sys.stderr)
        return 2
    agent = Agent(config, card, receive=lambda: feed.receive(card))
    try:
        agent.start()
        logging.getLogger("wirebook.agent").info(
            "agent up: OUCH %s:%d, feed %s:%d, control API %s", config.session.host, config.session.port,
            config.feed.address, config.feed.port,
            f"http://{config.control.host}:{agent.control.port}" if agent.control else "off",
        )  # fmt: skip
        agent.run(args.seconds)
    finally:
        summary = agent.summary()
        agent.shutdown()
        feed.close()
        card.close()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .host.run import run_main

    summary = run_main(seconds=args.seconds, symbols=args.symbols, messages=args.messages, seed=args.seed,
                       rate=args.rate, workdir=args.workdir, card=args.card,
                       live=not args.json and sys.stdout.isatty())  # fmt: skip
    print(json.dumps(summary, sort_keys=True, indent=None if args.json else 1))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .host.doctor import run_checks

    checks = run_checks(cpu=args.cpu)
    if args.json:
        print(json.dumps([c.as_dict() for c in checks], indent=1))
    else:
        for c in checks:
            print(f"{c.status:>4}  {c.name:<22} {c.found}")
            if c.advice and c.status != "ok":
                print(f"      {'':<22} -> {c.advice}")
    return 1 if any(c.status == "fail" for c in checks) else 0


def _cmd_hw_boards(args: argparse.Namespace) -> int:
    from .hw.boards import BOARDS

    if args.json:
        print(json.dumps([b.summary() for b in BOARDS.values()]))
        return 0
    for b in BOARDS.values():
        core = ", ".join(f"{k} {v}" for k, v in b.core.items())
        print(f"{b.name:18} {b.toolchain:12} {b.device:22} {b.description}\n{'':18} core: {core}, {b.core_mhz:g} MHz")
    return 0


def _cmd_hw_build(args: argparse.Namespace) -> int:
    import time

    from .hw import build
    from .hw.synthesis import ToolError

    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    try:
        result = build.build(args.board, args.folder, progress)
    except KeyError as e:
        print(f"wirebook hw build: {e.args[0]}", file=sys.stderr)
        return 2
    except ToolError as e:
        print(f"wirebook hw build: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_json(), sort_keys=True))
        return 0
    print(f"{result.board}: {result.bitstream or 'plan only (no Vivado): ' + result.folder} in {result.seconds} s")
    for clock, mhz in result.fmax_mhz.items():
        print(f"  {clock}: {mhz} MHz (target {result.target_mhz.get(clock, 0)} MHz)")
    if result.utilisation:
        print("  " + ", ".join(f"{k} {v}" for k, v in result.utilisation.items()))
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def _cmd_hw_flash(args: argparse.Namespace) -> int:
    from .hw import build

    try:
        print(build.flash(args.board, args.folder), end="")
    except (KeyError, build.FlashError) as e:
        print(f"wirebook hw flash: {e.args[0]}", file=sys.stderr)
        return 2
    return 0


def _cmd_bench_gateware(args: argparse.Namespace) -> int:
    from .hw import measure

    widths = [int(w) for w in args.widths.split(",") if w]
    report = measure.gateware(widths, messages=args.messages, synthesis=not args.no_synthesis,
                              route=not args.no_route, progress=None if args.json else print)  # fmt: skip
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(measure.markdown(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .model.book import BookError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BookError as e:
        hint = (
            " (a file sampled or started mid-day? --lenient skips and counts these)"
            if "not on the book" in str(e)
            else ""
        )
        print(f"wirebook {args.command}: error: {e}{hint}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as e:
        # Wire errors, book errors and bad arguments: one line naming what and where, no traceback.
        print(f"wirebook {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
