"""The register map declaration (proto.registers): layout, lookup, value codecs and the generated document."""

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirebook.proto import itch
from wirebook.proto import registers as regs
from wirebook.proto.registers import (
    COMMAND,
    CONFIG,
    COUNTER,
    DROP_REASONS,
    LINES,
    REGISTERS,
    STATUS,
    WORD_BYTES,
    BitField,
    Register,
    RegisterMap,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "registers.md"


def test_import_needs_no_amaranth():
    # The PYNQ host imports the map without the gateware toolchain.
    code = "import sys, wirebook.proto.registers; assert not any(m.startswith('amaranth') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_are_unique():
    names = [r.name for r in REGISTERS]
    assert len(names) == len(set(names))


def test_offsets_follow_declaration_order_without_overlap():
    at = 0
    for r in REGISTERS:
        assert r.offset >= at, f"{r.name} overlaps the register before it"
        assert r.offset - at < r.alignment, f"{r.name}: gap of {r.offset - at} bytes is more than alignment"
        at = r.end
    assert REGISTERS.size == at
    assert 1 << REGISTERS.address_width >= REGISTERS.size


def test_alignment():
    for r in REGISTERS:
        assert r.offset % WORD_BYTES == 0
        if r.words > 1:
            assert r.offset % 8 == 0 and r.stride % 8 == 0, f"{r.name}: multi-word values are 8-byte aligned"


def test_every_word_maps_back_to_its_register():
    seen = 0
    for r in REGISTERS:
        for i in range(r.elements):
            for k in range(r.words):
                address = r.address(i if r.is_array else None) + WORD_BYTES * k
                assert REGISTERS.at(address) == (r, i, k)
                seen += 1
    assert seen == len(list(REGISTERS.cells()))
    with pytest.raises(KeyError, match="nothing mapped"):
        REGISTERS.at(REGISTERS.size)
    with pytest.raises(KeyError, match="not word aligned"):
        REGISTERS.at(2)


def test_map_is_sized_from_data():
    assert regs.register("group").elements == regs.N_GROUPS
    assert regs.register("messages_by_type").labels == itch.TYPES
    for line in LINES:
        assert regs.register(f"drops_{line.lower()}").labels == DROP_REASONS
    assert regs.register("n_groups").reset == regs.N_GROUPS
    assert regs.register("line_enable").labels == LINES


def test_kinds():
    for r in REGISTERS.of(COUNTER):
        assert r.width == 64 and r.latched
    assert regs.register("missing_messages").amount_width == 64
    for r in REGISTERS.of(COMMAND):
        assert not r.access.readable and r.access.writable
    assert regs.register("magic").access is STATUS and regs.register("magic").constant
    assert regs.register("clock").latched and not regs.register("expected_value").latched
    assert regs.register("expected_value").access is CONFIG


def test_magic_reads_as_text():
    magic = regs.register("magic")
    assert regs.address("magic") == 0
    assert magic.decode(magic.reset) == regs.MAGIC
    assert magic.reset.to_bytes(4, "little") == regs.MAGIC.encode("ascii")


def test_addresses_by_index_and_label():
    drops = regs.register("drops_b")
    assert regs.address("drops_b", "MAC") == drops.offset + DROP_REASONS.index("MAC") * 8
    assert regs.address("drops_b", 0) == drops.offset
    assert regs.address("group", 3) == regs.register("group").offset + 3 * 8
    with pytest.raises(IndexError, match="give an index"):
        regs.address("drops_b")
    with pytest.raises(IndexError, match="out of range"):
        regs.address("drops_b", len(DROP_REASONS))
    with pytest.raises(KeyError, match="'NOPE'"):
        regs.address("drops_b", "NOPE")
    with pytest.raises(IndexError, match="not an array"):
        regs.address("enable", 0)


def test_unknown_name_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="'local_mca'.*local_mac"):
        regs.register("local_mca")
    with pytest.raises(KeyError, match="'no_such_register'"):
        regs.address("no_such_register")


@given(st.integers(0, (1 << 80) - 1))
def test_multi_word_round_trip(value):
    session = regs.register("session")
    words = session.to_words(value)
    assert len(words) == 3 and all(0 <= w < 1 << 32 for w in words)
    assert words[0] == value & 0xFFFF_FFFF  # least significant word first
    assert session.from_words(words) == value


@given(st.integers(0, (1 << 64) - 1))
def test_counter_round_trip(value):
    counter = regs.register("frames_a")
    assert counter.from_words(counter.to_words(value)) == value


def test_text_round_trip():
    session = regs.register("session")
    value = session.encode("ABC")
    assert value.to_bytes(10, "little") == b"ABC       "
    assert session.decode(value) == "ABC"
    assert session.from_words(session.to_words("SESSION001")) == session.encode("SESSION001")
    with pytest.raises(ValueError, match="session.*longer than 10"):
        session.encode("SESSION0001")
    with pytest.raises(TypeError, match="not text"):
        regs.register("local_ip").encode("10.0.0.1")


def test_fields_round_trip():
    group = regs.register("group")
    value = group.encode({"address": 0xE000_0001, "port": 26477, "valid": 1})
    assert value == 0xE000_0001 | 26477 << 32 | 1 << 48
    assert group.decode(value) == {"address": 0xE000_0001, "port": 26477, "valid": 1}
    assert group.to_words(value) == (0xE000_0001, 26477 | 1 << 16)  # valid in the word written last
    with pytest.raises(KeyError, match="'vlan'"):
        group.encode({"vlan": 1})
    with pytest.raises(ValueError, match="port = 65536"):
        group.encode({"port": 1 << 16})


def test_values_are_range_checked():
    with pytest.raises(ValueError, match="local_mac.*48 bits"):
        regs.register("local_mac").encode(1 << 48)
    with pytest.raises(ValueError, match="2 word"):
        regs.register("local_mac").from_words([1])


@pytest.mark.parametrize(
    "bad, message",
    [
        (Register("x", CONFIG, 8, "", reset=256), "does not fit"),
        (Register("x", COUNTER, 32, ""), "counters are 64 bits"),
        (Register("x", COMMAND, 33, ""), "at most one word"),
        (Register("x", CONFIG, 8, "", amount_width=2), "only counters"),
        (Register("x", CONFIG, 8, "", count=2, labels=("a",)), "1 labels for 2"),
        (Register("x", CONFIG, 8, "", fields=(BitField("a", 0, 4), BitField("b", 5, 3))), "expected 4"),
        (Register("x", CONFIG, 8, "", constant=True), "only status"),
        (Register("Bad-Name", CONFIG, 8, ""), "identifiers"),
        (Register("x", CONFIG, 12, "", text=True), "whole bytes"),
    ],
)
def test_bad_declarations_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        RegisterMap([bad])


def test_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="'x' declared twice"):
        RegisterMap([Register("x", CONFIG, 8, ""), Register("x", STATUS, 8, "")])


def test_doc_is_up_to_date():
    assert DOC.exists(), "docs/registers.md is missing: python -m wirebook.proto.registers > docs/registers.md"
    assert DOC.read_text() == regs.markdown(), "docs/registers.md is stale: regenerate it with " + (
        "python -m wirebook.proto.registers > docs/registers.md"
    )


def test_doc_command_prints_the_doc():
    out = subprocess.run(
        [sys.executable, "-m", "wirebook.proto.registers"], check=True, capture_output=True, text=True
    ).stdout
    assert out == regs.markdown()


def test_doc_lists_every_word():
    doc = regs.markdown()
    for r in REGISTERS:
        for i in range(r.elements):
            assert f"| 0x{r.address(i if r.is_array else None):03x} |" in doc
