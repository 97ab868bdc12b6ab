"""The `wirebook` command, run as a user runs it: gen, replay (file and pcap), inspect, errors."""

import json
import shutil
import subprocess
import sys

import pytest
from ritch_sample import RITCH, RITCH_COUNTS

from wirebook.proto import itch, itch_file
from wirebook.sim import oracles


def wirebook(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "wirebook", *map(str, args)], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"wirebook {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    wirebook("gen", "--symbols", 8, "--messages", 6000, "--seed", 5, "-o", out / "m.itch", "--pcap", out / "m.pcap")
    return out / "m.itch", out / "m.pcap"


def test_replay_ritch_gives_the_published_counts(tmp_path):
    summary = json.loads(wirebook("replay", RITCH, "--lenient", "--json").stdout)
    assert summary["messages"] == {t: RITCH_COUNTS.get(t, 0) for t in itch.TYPES}
    assert summary["framing"] == "tolerant"
    assert summary["skipped_unknown_order"] == 117
    # the number of top-of-book changes meatpy finds on the same messages (a file with true lengths)
    fixed = tmp_path / "ritch.itch"
    chunk = itch_file.read_all(RITCH, tolerant=True)
    with itch_file.ItchWriter(fixed) as w:
        for i in range(len(chunk)):
            w.write(chunk.message(i))
    assert summary["bbo_updates"] == len(oracles.meatpy_bbo_changes(fixed))
    assert set(summary["final_bbo"]) == {"ALC", "BOB", "CHAR"}


def test_replay_of_the_pcap_equals_replay_of_the_file(market):
    itch_path, pcap_path = market
    from_file = json.loads(wirebook("replay", itch_path, "--json").stdout)
    from_pcap = json.loads(wirebook("replay", pcap_path, "--json").stdout)
    assert from_file["source"] == "itch" and from_pcap["source"] == "pcap"
    for key in ("messages", "bbo_updates", "bbo_sha256", "final_bbo"):
        assert from_file[key] == from_pcap[key], key
    assert sum(from_file["messages"].values()) == 6000
    assert from_pcap["feed"]["end_of_session_seen"] is True
    assert from_pcap["feed"]["duplicates"] > 0  # every packet came on both lines


def test_gen_is_deterministic(tmp_path, market):
    wirebook("gen", "--symbols", 8, "--messages", 6000, "--seed", 5, "-o", tmp_path / "again.itch")
    assert (tmp_path / "again.itch").read_bytes() == market[0].read_bytes()


def test_replay_text_summary(market):
    out = wirebook("replay", market[0]).stdout
    assert "6000 messages" in out and "BBO updates:" in out and "sha256" in out


def test_inspect_shows_decoded_messages():
    out = wirebook("inspect", RITCH, "--type", "A", "--limit", "2").stdout.splitlines()
    assert len(out) == 2
    # message 9 of the file: add order, reference 0, buy 1000 BOB at $5.3167, 08:38:59.052372053
    assert out[0].split()[0] == "9"
    for text in ("add_order", "order_reference_number=0", "buy_sell_indicator=B", "shares=1000", "stock=BOB",
                 "price=5.3167", "timestamp=08:38:59.052372053"):  # fmt: skip
        assert text in out[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", RITCH], "sequence 110 ('D'): order 1440692 is not on the book (a file sampled or started mid-day? "
         "--lenient"),
        (["replay", RITCH, "--framing", "strict"], "at byte offset 0: expected 12 (empty length fields"),
        (["replay", "/nonexistent/file.itch"], "no such file"),
        (["inspect", "/nonexistent/file.itch"], "no such file"),
    ],
)  # fmt: skip
def test_errors_say_what_and_where(args, message):
    result = wirebook(*args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_truncated_file_is_refused_naming_the_offset(tmp_path, market):
    data = market[0].read_bytes()
    cut = tmp_path / "cut.itch"
    cut.write_bytes(data[:-5])
    result = wirebook("replay", cut, check=False)
    assert result.returncode == 2 and "TruncatedError" not in result.stderr
    last_start = len(data) - 2 - itch.MESSAGES["S"].length  # the day ends with system event 'C'
    assert data[last_start + 2 : last_start + 3] == b"S"
    assert f"byte offset {last_start}" in result.stderr


def test_tshark_decodes_the_generated_feed(market):
    """Wireshark's MoldUDP64 dissector reads `wirebook gen --pcap` output as the session we meant."""
    itch_path, pcap_path = market
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is not installed: `make test` installs it (apt-get install tshark)")
    fields = ["ip.dst", "moldudp64.session", "moldudp64.sequence", "moldudp64.count", "moldudp64.msglen"]
    command = [tshark, "-r", pcap_path, "-d", "udp.port==26477,moldudp64", "-T", "fields", "-E", "separator=;"]
    for name in fields:
        command += ["-e", name]
    rows = [r.split(";") for r in subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()]
    chunk = itch_file.read_all(itch_path)
    lengths = [str(itch.LENGTH_BY_TYPE_BYTE[t]) for t in chunk.types]
    for group in ("233.54.12.111", "233.49.196.111"):  # lines A and B
        line = [r for r in rows if r[0] == group]
        assert {r[1] for r in line} == {"WIREBOOK01"}
        expected_sequence = 1
        for _, _, sequence, count, msglen in line:
            sequence, count = int(sequence), int(count)
            assert sequence == expected_sequence
            if count == 0xFFFF:  # end of session: the next sequence, nothing after it
                assert line[-1][3] == "65535" and sequence == len(lengths) + 1
                continue
            assert (msglen.split(",") if count else []) == lengths[sequence - 1 : sequence - 1 + count]
            expected_sequence += count
        assert expected_sequence == len(lengths) + 1
        data_packets = [r for r in line if int(r[3]) not in (0, 0xFFFF)]
        assert len(lengths) / len(data_packets) > 2  # many messages per packet
