"""The agent's TOML file: the shipped example loads; a bad file is refused at start, naming every bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirebook.host.config import load_config
from wirebook.host.validated import ConfigError

EXAMPLE = Path(__file__).parents[2] / "deploy" / "agent.example.toml"
TOKEN = {"WIREBOOK_CONTROL_TOKEN": "0123456789abcdef0123"}
MINIMAL = """
[agent]
instruments = ["AAPL"]
[session]
port = 15001
username = "WB"
password = "pw"
"""


def test_the_example_loads_with_every_section():
    config = load_config(EXAMPLE, TOKEN)
    assert config.agent.instruments == ["AAPL", "MSFT", "NVDA"]
    assert config.session.port == 15001 and config.journal.backend == "sqlite"
    assert config.control.token == TOKEN["WIREBOOK_CONTROL_TOKEN"]  # from the environment
    assert config.risk.restricted_symbols == frozenset({"XXXX"})


def test_minimal_file_takes_the_defaults(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL)
    config = load_config(path, TOKEN)
    assert config.strategy.size == 100 and config.risk.max_open_orders == 200 and config.feed.port == 26477


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ('[risk]\nmax_order_shares = -5\ncollar_percent = 250\n',
         ["risk.max_order_shares", "risk.collar_percent"]),
        ("[strategy]\nfair_value = 'last'\n", ["strategy.fair_value"]),
        ("[typo_section]\nx = 1\n", ["typo_section"]),
        ("[journal]\nbackend = 'postgresql'\n", ["journal.conninfo"]),
        ("[feed]\nport = 70000\n", ["feed.port"]),
    ],
)  # fmt: skip
def test_bad_values_are_named(tmp_path, extra, names):
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path, TOKEN)
    text = str(caught.value)
    assert str(path) in text
    for name in names:
        assert name in text


def test_session_fields_are_checked(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL.replace('username = "WB"', 'username = "FARTOOLONG"'))
    with pytest.raises(ConfigError, match=r"session\.username"):
        load_config(path, TOKEN)


def test_missing_token_says_where_it_may_come_from(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError, match=r"WIREBOOK_CONTROL_TOKEN"):
        load_config(path, {})


def test_unreadable_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", TOKEN)
    path = tmp_path / "agent.toml"
    path.write_text("[agent\ninstruments = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, TOKEN)
    path.write_text(MINIMAL.replace('["AAPL"]', '["AAPL", "AAPL"]'))
    with pytest.raises(ConfigError, match=r"agent\.instruments.*twice"):
        load_config(path, TOKEN)
