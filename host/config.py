"""The agent's configuration file (TOML): one section per component, each declared next to its code.

    [agent]     AgentSection (below): instruments to quote, busy polling, CPU pin, token prefix, timers
    [feed]      FeedConfig (below): where the host receives the feed it hands to the card (look-aside)
    [card]      driver.card.CardSetup: the card's registers (MAC, groups and ports, session, lines)
    [strategy]  host.strategy.QuoterConfig
    [risk]      host.risk.RiskLimits
    [session]   host.session.SessionConfig (the OUCH port and its SoupBinTCP login)
    [gateway]   host.gateway.GatewayConfig (the constant fields of our OUCH orders)
    [journal]   host.journal.JournalConfig
    [control]   host.control.ControlConfig (the token may come from $WIREBOOK_CONTROL_TOKEN instead)
    [publish]   host.publisher.PublisherConfig

`load_config(path)` refuses the whole file at start when anything is wrong, listing every bad field by its
dotted path (`risk.max_order_shares: Input should be greater than 0, got -5`); an unknown section or key is
an error too, so a typo is never silently ignored. `deploy/agent.example.toml` is a complete example.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from ..driver.card import CardSetup
from .control import ControlConfig
from .gateway import GatewayConfig
from .journal import JournalConfig
from .publisher import PublisherConfig
from .risk import RiskLimits
from .session import SessionConfig
from .strategy import QuoterConfig
from .validated import ConfigError, ConfigModel, describe

__all__ = ["AgentConfig", "AgentSection", "FeedConfig", "load_config"]

TOKEN_VARIABLE = "WIREBOOK_CONTROL_TOKEN"


class AgentSection(ConfigModel):
    """[agent]: what to quote and how the loop runs."""

    instruments: list[str] = Field(..., min_length=1, description="stock symbols to quote")
    busy_poll: bool = Field(True, description="spin without sleeping (own a core); false: sleep idle_sleep_us")
    idle_sleep_us: int = Field(50, ge=0, le=100_000)
    cpu: int | None = Field(None, ge=0, description="pin the agent's thread to this CPU")
    token_prefix: str = Field("WB", min_length=1, max_length=6, pattern=r"^[A-Za-z0-9]+$")
    requote_interval_ms: int = Field(100, gt=0, description="revisit every instrument's quote this often")
    shutdown_timeout_s: float = Field(
        5.0, gt=0, le=600, description="on shutdown, wait this long for the exchange to confirm the cancels"
    )

    @field_validator("instruments")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not (s.isascii() and s.strip() and len(s) <= 8 and s == s.strip())]
        if bad:
            raise ValueError(f"stock symbols are 1-8 ASCII characters without spaces, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"a symbol is listed twice: {value}")
        return value


class FeedConfig(ConfigModel):
    """[feed]: the MoldUDP64 feed the host receives and hands to the card (unicast, or a multicast group)."""

    address: str = Field("127.0.0.1", description="address to bind, or multicast group to join")
    port: int = Field(26477, ge=0, le=65535)
    interface: str = Field("0.0.0.0", description="interface address for the multicast join")


class AgentConfig(ConfigModel):
    agent: AgentSection
    feed: FeedConfig = FeedConfig()
    card: CardSetup = CardSetup()
    strategy: QuoterConfig = QuoterConfig()
    risk: RiskLimits = RiskLimits()
    session: SessionConfig
    gateway: GatewayConfig = GatewayConfig()
    journal: JournalConfig = JournalConfig()
    control: ControlConfig
    publish: PublisherConfig = PublisherConfig()


def parse_config(data: dict[str, Any], source: str, environ: dict[str, str] | None = None) -> AgentConfig:
    """An AgentConfig from parsed TOML; the control token may come from the environment."""
    environ = os.environ if environ is None else environ
    data = {**data}
    control = dict(data.get("control") or {})
    if "token" not in control and environ.get(TOKEN_VARIABLE):
        control["token"] = environ[TOKEN_VARIABLE]
    data["control"] = control
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as e:
        problems = describe(e)
        if any(p.startswith("control.token: Field required") for p in problems):
            problems.append(f"control.token: set it in the file or in ${TOKEN_VARIABLE}")
        raise ConfigError(source, problems) from None


def load_config(path: str | os.PathLike, environ: dict[str, str] | None = None) -> AgentConfig:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read the file: {e.strerror}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), [f"not UTF-8 text at byte {e.start}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), [f"not valid TOML: {e}"]) from None
    return parse_config(data, str(path), environ)
