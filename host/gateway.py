"""OUCH 4.2 order gateway: the agent's orders out through a SoupBinTCP session, the exchange's answers back.

Out: `submit(request, now_ns)` is the only way an order leaves the agent. It asks the risk engine first
(`risk.check(request, now_ns)`, for NEW, REPLACE and CANCEL alike); a refused request sends nothing and
the decision is returned. An accepted one is encoded (Enter Order 'O' with a new token, Replace Order 'U'
with a new replacement token, Cancel Order 'X' with shares 0), recorded in `OwnOrders` (sent_new /
sent_replace / sent_cancel, which refuses a transition the order's state does not allow: then nothing is
sent) and handed to the session. `cancel_all(now_ns)` does that for every open order (kill switch, shutdown).

In: `poll(now_ns)` drives the session, decodes every Sequenced Data payload as an OUCH outbound message,
applies it to `OwnOrders` and returns typed events: `Fill`, `OrderUpdate`, `Reject`, `BrokenTrade`,
`TradeCorrection`, `SystemEvent`. Each ouch.OUTBOUND message type has exactly one handler (`_on_*`).

The exchange's bytes are untrusted: an undecodable message, an unknown message type, a message for a token
this agent never sent, a fill larger than the order's open shares, a cancel of more than them, a repeated
match number, an event the order's state does not allow (`OrderStateError`)... is logged (sequence number,
message type, token, what was expected), counted in `anomalies` by kind, changes no order state, emits no
event and never raises out of `poll`.

Resume after a restart: build the session with `next_sequence=journal last sequence + 1` (and the session
name) and the allocator with `TokenAllocator(prefix, start=journal last token number + 1)`; `last_sequence`
and `next_token_number` are what the journal records.

Prices are Price(4) units throughout; timestamps in events are the exchange's nanoseconds since midnight.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field, ValidationInfo, field_validator

from wirebook.proto import ouch
from wirebook.proto.errors import WireError

from .journal import Journal, NullJournal
from .orders import (
    LIVE_STATES,
    Order,
    OrderRequest,
    OrderState,
    OrderStateError,
    OwnOrders,
    RequestKind,
    Side,
    TokenAllocator,
    UnknownOrderError,
)
from .session import SessionNotLoggedInError, SoupSession
from .validated import ConfigModel

__all__ = [
    "BrokenTrade",
    "Fill",
    "GatewayConfig",
    "GatewayEvent",
    "OrderGateway",
    "OrderUpdate",
    "Reject",
    "RiskCheck",
    "SubmitResult",
    "SystemEvent",
    "TradeCorrection",
]

log = logging.getLogger(__name__)

STOCK_WIDTH = ouch.INBOUND["O"].by_name["stock"].width
FIRM_WIDTH = ouch.INBOUND["O"].by_name["firm"].width
_MESSAGE_NAMES = {type_: layout.name.removeprefix("ouch_") for type_, layout in ouch.OUTBOUND.items()}


class GatewayConfig(ConfigModel):
    """The `[gateway]` section: the Enter / Replace Order fields the agent does not choose per order."""

    time_in_force: int = Field(ouch.TIME_IN_FORCE_MARKET_HOURS, ge=0, le=ouch.TIME_IN_FORCE_SYSTEM_HOURS)
    display: str = "A"
    capacity: str = "P"
    intermarket_sweep_eligibility: str = "N"
    minimum_quantity: int = Field(0, ge=0, le=ouch.MAX_ORDER_SHARES)
    cross_type: str = "N"
    customer_type: str = " "  # the port's default

    @field_validator("display", "capacity", "intermarket_sweep_eligibility", "cross_type", "customer_type")
    @classmethod
    def _documented_code(cls, value: str, info: ValidationInfo) -> str:
        codes = ouch.INBOUND_CODES[info.field_name]
        if value not in codes:
            raise ValueError(f"expected an OUCH 4.2 code in {sorted(codes)}, got {value!r}")
        return value


# --- what the risk engine looks like from here ------------------------------------------------------------


class RiskDecisionLike(Protocol):
    accepted: bool
    reason: Any
    detail: str


class RiskCheck(Protocol):
    """The risk engine (wirebook.host.risk.RiskEngine) as the gateway uses it."""

    def check(self, request: OrderRequest, now_ns: int) -> RiskDecisionLike: ...


@dataclass(slots=True, frozen=True)
class SubmitResult:
    """The risk decision, and the token sent when it was accepted ("" when refused).

    The token is the new order's for a NEW, the replacement's for a REPLACE, the existing order's for a CANCEL.
    """

    decision: RiskDecisionLike
    token: str = ""

    @property
    def accepted(self) -> bool:
        return self.decision.accepted


# --- events -----------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Fill:
    """An execution of one of our orders (Executed 'E' or Executed with Reference Price 'G')."""

    token: str
    locate: int
    side: Side
    shares: int
    price: int
    match_number: int
    liquidity_flag: str
    sequence: int = 0
    timestamp: int = 0
    reference_price: int = 0  # 'G' only


@dataclass(slots=True, frozen=True)
class OrderUpdate:
    """An order's state after an exchange message: `message` names it (ouch layout name without "ouch_")."""

    token: str
    state: OrderState
    open_shares: int
    message: str  # accepted, replaced, canceled, aiq_canceled, cancel_pending, cancel_reject, order_priority_update
    reason: str = ""  # cancel reason code for canceled / aiq_canceled (ouch.CANCEL_REASON)
    sequence: int = 0


@dataclass(slots=True, frozen=True)
class Reject:
    """Rejected 'J': of a NEW (`token` is the order's), or of a REPLACE (`existing_token` is the kept order)."""

    token: str
    reason: str  # ouch.REJECT_REASON code
    existing_token: str = ""
    sequence: int = 0


@dataclass(slots=True, frozen=True)
class BrokenTrade:
    """Broken Trade 'B': the execution `match_number` of `token` is void; shares and price are the fill's."""

    token: str
    locate: int
    side: Side
    shares: int
    price: int
    match_number: int
    reason: str  # ouch.BROKEN_TRADE_REASON code
    sequence: int = 0


@dataclass(slots=True, frozen=True)
class TradeCorrection:
    """Trade Correction 'F': the execution `match_number` now has `shares` at `price` (was previous_*)."""

    token: str
    locate: int
    side: Side
    match_number: int
    shares: int
    price: int
    previous_shares: int
    previous_price: int
    reason: str
    sequence: int = 0


@dataclass(slots=True, frozen=True)
class SystemEvent:
    """System Event 'S': start ('S') or end ('E') of day."""

    event_code: str
    timestamp: int
    sequence: int = 0


GatewayEvent = Fill | OrderUpdate | Reject | BrokenTrade | TradeCorrection | SystemEvent


class _Anomaly(Exception):
    """Raised inside a handler: the message is refused as `kind`, nothing changed."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


# --- the gateway ------------------------------------------------------------------------------------------


class OrderGateway:
    """OUCH 4.2 over a `SoupSession` (see the module docstring).

    `stocks` maps ITCH stock locate -> stock symbol (at most 8 ASCII characters); `firm` is the Enter Order
    firm (blank: the OUCH account's default).
    """

    def __init__(
        self,
        session: SoupSession,
        orders: OwnOrders,
        tokens: TokenAllocator,
        risk: RiskCheck,
        stocks: dict[int, str],
        firm: str = "",
        config: GatewayConfig | None = None,
        journal: Journal | None = None,
    ) -> None:
        for locate, symbol in stocks.items():
            if not (symbol.isascii() and symbol.isprintable()) or not 0 < len(symbol) <= STOCK_WIDTH:
                raise ValueError(f"stocks[{locate}]: expected 1-{STOCK_WIDTH} printable ASCII, got {symbol!r}")
        if not (firm.isascii() and firm.isprintable()) or len(firm) > FIRM_WIDTH:
            raise ValueError(f"firm: expected at most {FIRM_WIDTH} printable ASCII characters, got {firm!r}")
        self.session = session
        self.orders = orders
        self.tokens = tokens
        self.risk = risk
        self.stocks = stocks
        self.firm = firm
        self.config = config = config or GatewayConfig()
        self.journal = journal or NullJournal()
        self.anomalies: Counter[str] = Counter()
        self._replacing: dict[str, str] = {}  # replacement token in flight -> existing token
        self._fills: dict[tuple[str, int], tuple[int, int]] = {}  # (token, match number) -> (shares, price)
        # The constant fields of each inbound message, checked once by encode_inbound; the hot path packs
        # with encoders generated from the field tables (Layout.packer), the constants baked in.
        enter_constant = {
            "time_in_force": config.time_in_force,
            "firm": firm,
            "display": config.display,
            "capacity": config.capacity,
            "intermarket_sweep_eligibility": config.intermarket_sweep_eligibility,
            "minimum_quantity": config.minimum_quantity,
            "cross_type": config.cross_type,
            "customer_type": config.customer_type,
        }
        replace_constant = {
            "time_in_force": config.time_in_force,
            "display": config.display,
            "intermarket_sweep_eligibility": config.intermarket_sweep_eligibility,
            "minimum_quantity": config.minimum_quantity,
        }
        ouch.encode_inbound("O", order_token="", buy_sell_indicator="B", shares=1, stock="A", price=1, **enter_constant)
        ouch.encode_inbound(
            "U", existing_order_token="", replacement_order_token="", shares=1, price=1, **replace_constant
        )
        self._enter = ouch.INBOUND["O"].packer(
            "order_token", "buy_sell_indicator", "shares", "stock", "price", **enter_constant
        )
        self._replace = ouch.INBOUND["U"].packer(
            "existing_order_token", "replacement_order_token", "shares", "price", **replace_constant
        )
        self._cancel = ouch.INBOUND["X"].packer("order_token", shares=0)
        self._handlers: dict[str, Callable[[Any, int, list[GatewayEvent]], None]] = {
            "S": self._on_system_event,
            "A": self._on_accepted,
            "U": self._on_replaced,
            "C": self._on_canceled,
            "D": self._on_canceled,
            "E": self._on_executed,
            "B": self._on_broken_trade,
            "G": self._on_executed,
            "F": self._on_trade_correction,
            "J": self._on_rejected,
            "P": self._on_cancel_pending,
            "I": self._on_cancel_reject,
            "T": self._on_priority_update,
            "M": self._on_order_modified,
        }
        missing = set(ouch.OUTBOUND) ^ set(self._handlers)
        assert not missing, f"OUCH outbound types without a handler (or unknown): {sorted(missing)}"

    # --- reading -------------------------------------------------------------------------------------------

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last OUCH outbound message received (journal it to resume)."""
        return self.session.last_sequence

    @property
    def next_token_number(self) -> int:
        """The token counter's next value (journal it; resume with TokenAllocator(prefix, start=this))."""
        return self.tokens.next_number

    def open_orders(self) -> list[Order]:
        """Every open order (OwnOrders.open_orders)."""
        return list(self.orders.open_orders())

    # --- out ----------------------------------------------------------------------------------------------

    def submit(self, request: OrderRequest, now_ns: int) -> SubmitResult:
        """Check `request` with the risk engine and, if accepted, send it and record it in OwnOrders.

        Raises SessionNotLoggedInError (before asking the risk engine) when the session cannot send;
        KeyError for a NEW of a locate not in `stocks`; ValueError when an accepted NEW or REPLACE has
        shares or price outside what OUCH can carry; UnknownOrderError / OrderStateError when OwnOrders refuses
        the transition (e.g. a CANCEL of an order already done). Nothing is sent in every one of those cases.
        """
        if not self.session.logged_in:
            raise SessionNotLoggedInError(
                f"{self.session.where}: cannot submit {request.kind.value} order in state "
                f"{self.session.state.value}, expected logged_in"
            )
        kind = request.kind
        if kind is RequestKind.NEW and request.locate not in self.stocks:
            raise KeyError(f"NEW order for locate {request.locate}: no stock symbol for it in the gateway's stocks")
        decision = self.risk.check(request, now_ns)
        if not decision.accepted:
            return SubmitResult(decision)
        if kind is RequestKind.CANCEL:
            token = request.existing_token
            payload = self._cancel(token)
            self.orders.sent_cancel(token)
            self.journal.cancel_sent(token)
        else:
            _check_carriable(request)
            token = self.tokens.allocate()
            if kind is RequestKind.NEW:
                stock = self.stocks[request.locate]
                payload = self._enter(token, request.side.value, request.shares, stock, request.price)
                self.orders.sent_new(token, request.locate, stock, request.side, request.price, request.shares)
                self.journal.order_sent(token, request.locate, stock, request.side, request.price, request.shares)
            else:
                existing = request.existing_token
                payload = self._replace(existing, token, request.shares, request.price)
                self.orders.sent_replace(existing, token, request.shares)
                self._replacing[token] = existing
                self.journal.replace_sent(existing, token, request.price, request.shares)
        self.session.send(payload)
        return SubmitResult(decision, token)

    def cancel_all(self, now_ns: int) -> list[SubmitResult]:
        """Submit a CANCEL (through the risk engine, which accepts cancels) for every open order not already
        being canceled. Raises SessionNotLoggedInError, sending nothing, when the session cannot send."""
        results = []
        for order in self.orders.open_orders():
            if not order.cancel_pending:
                request = OrderRequest(RequestKind.CANCEL, order.locate, order.side, existing_token=order.token)
                results.append(self.submit(request, now_ns))
        return results

    # --- in -----------------------------------------------------------------------------------------------

    def poll(self, now_ns: int) -> list[GatewayEvent]:
        """Drive the session to `now_ns` and apply every OUCH message received; return the events in order."""
        events: list[GatewayEvent] = []
        for sequence, payload in self.session.poll(now_ns * 1e-9):
            self._apply(sequence, payload, events)
        return events

    def _apply(self, sequence: int, payload: bytes, events: list[GatewayEvent]) -> None:
        if not payload:
            self._anomaly("undecodable_message", sequence, "", "", "expected an OUCH message, got 0 bytes")
            return
        type_ = chr(payload[0])
        handler = self._handlers.get(type_)
        if handler is None:
            expected = f"an OUCH 4.2 outbound message type in {''.join(ouch.OUTBOUND)}"
            self._anomaly("unknown_message_type", sequence, type_, "", f"expected {expected}, got {payload[:1]!r}")
            return
        try:
            message = ouch.decode_outbound(payload)
        except WireError as e:
            self._anomaly("undecodable_message", sequence, type_, "", str(e))
            return
        token = getattr(message, "order_token", "") or getattr(message, "replacement_order_token", "")
        try:
            handler(message, sequence, events)
        except UnknownOrderError:
            self._anomaly("unknown_token", sequence, type_, token, "expected a token this agent sent")
        except OrderStateError as e:
            self._anomaly("invalid_transition", sequence, type_, token, str(e))
        except _Anomaly as e:
            self._anomaly(e.kind, sequence, type_, token, e.detail)

    def _anomaly(self, kind: str, sequence: int, type_: str, token: str, detail: str) -> None:
        self.anomalies[kind] += 1
        self.journal.exchange_message(sequence, type_, {"anomaly": kind, "token": token, "detail": detail})
        log.warning(
            "OUCH %s: sequence %d, message type %r, token %r: %s; ignored", kind, sequence, type_, token, detail
        )

    def _journal_other(self, sequence: int, m: Any) -> None:
        """A sequenced message that moves no order state the journal replays: kept for the audit trail."""
        self.journal.exchange_message(sequence, m.message_type, {k: v for k, v in m._asdict().items()})

    # --- one handler per OUTBOUND message type; each changes state only once every check has passed ---------

    def _on_system_event(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        log.info("OUCH System Event %r (%s)", m.event_code, ouch.EVENT_CODE.get(m.event_code, "undocumented"))
        self._journal_other(sequence, m)
        events.append(SystemEvent(m.event_code, m.timestamp, sequence))

    def _on_accepted(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        token = m.order_token
        if token not in self.orders and self.tokens.number_of(token) is not None:
            self._adopt(m, sequence, events)
            return
        order = self.orders.get(token)
        if m.stock != order.stock or m.buy_sell_indicator != order.side.value:
            # The exchange's word is what is live: apply it, but say loudly that it is not what was sent.
            self.anomalies["accepted_mismatch"] += 1
            log.error(
                "OUCH Accepted at sequence %d, token %r: %s %s, sent %s %s",
                sequence,
                token,
                m.buy_sell_indicator,
                m.stock,
                order.side.value,
                order.stock,
            )
        self.orders.accepted(token, m.order_reference_number, m.price, m.shares)
        self.journal.order_accepted(
            sequence, token, m.order_reference_number, m.price, m.shares, order.side, order.locate, order.stock
        )
        events.append(OrderUpdate(token, order.state, order.open_shares, "accepted", "", sequence))

    def _adopt(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        """An order of ours (our token prefix) live at the exchange that we have no record of: its Enter Order
        was sent just before a crash and never reached the journal. Take it in and cancel it at once, so no
        order we do not know rests at the exchange; the token counter moves past it."""
        token = m.order_token
        locate = next((loc for loc, sym in self.stocks.items() if sym == m.stock), 0)
        side = Side.BUY if m.buy_sell_indicator == Side.BUY.value else Side.SELL
        self.anomalies["adopted_unknown_order"] += 1
        log.warning("OUCH Accepted at sequence %d for token %r we have no record of: adopted and canceled", sequence,
                    token)  # fmt: skip
        number = self.tokens.number_of(token)
        if number is not None and number >= self.tokens.next_number:
            self.tokens.next_number = number + 1
        self.orders.sent_new(token, locate, m.stock, side, m.price, m.shares)
        order = self.orders.accepted(token, m.order_reference_number, m.price, m.shares)
        self.journal.order_accepted(sequence, token, m.order_reference_number, m.price, m.shares, side, locate, m.stock)
        events.append(OrderUpdate(token, order.state, order.open_shares, "adopted", "", sequence))
        if order.is_open and self.session.logged_in:
            self.submit(OrderRequest(RequestKind.CANCEL, locate, side, existing_token=token), 0)

    def _on_replaced(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        previous, replacement = m.previous_order_token, m.replacement_order_token
        old = self.orders.get(previous)
        if old.replacement != replacement:
            in_flight = repr(old.replacement) if old.replacement else "none"
            raise _Anomaly(
                "unknown_replacement", f"{previous!r} replaced by {replacement!r}, replace in flight: {in_flight}"
            )
        new = self.orders.replaced(previous, replacement, m.order_reference_number, m.price, m.shares)
        self.journal.order_replaced(sequence, previous, replacement, m.order_reference_number, m.price, m.shares)
        self._replacing.pop(replacement, None)
        events.append(OrderUpdate(previous, old.state, 0, "replaced", "", sequence))
        events.append(OrderUpdate(replacement, new.state, new.open_shares, "replaced", "", sequence))

    def _on_canceled(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        token = m.order_token
        order = self.orders.get(token)
        if order.state in LIVE_STATES and m.decrement_shares > order.open_shares:
            raise _Anomaly(
                "overcancel", f"cancel of {m.decrement_shares} shares, expected 1..{order.open_shares} (open shares)"
            )
        self.orders.canceled(token, m.decrement_shares)
        self.journal.order_canceled(sequence, token, m.decrement_shares, m.reason)
        name = _MESSAGE_NAMES[m.message_type]
        events.append(OrderUpdate(token, order.state, order.open_shares, name, m.reason, sequence))

    def _on_executed(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        token, shares, match = m.order_token, m.executed_shares, m.match_number
        order = self.orders.get(token)
        if (token, match) in self._fills:
            raise _Anomaly("duplicate_match", f"match number {match} already executed for this order")
        if order.state in LIVE_STATES and shares > order.open_shares:
            raise _Anomaly("overfill", f"execution of {shares} shares, expected 1..{order.open_shares} (open shares)")
        self.orders.executed(token, shares)
        self._fills[(token, match)] = (shares, m.execution_price)
        self.journal.order_executed(sequence, token, shares, m.execution_price, match, m.liquidity_flag)
        reference = getattr(m, "reference_price", 0)
        events.append(
            Fill(
                token,
                order.locate,
                order.side,
                shares,
                m.execution_price,
                match,
                m.liquidity_flag,
                sequence,
                m.timestamp,
                reference,
            )
        )

    def _on_broken_trade(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        token, match = m.order_token, m.match_number
        order = self.orders.get(token)
        fill = self._fills.pop((token, match), None)
        if fill is None:
            raise _Anomaly("unknown_match", f"broken trade of match number {match}: no such execution of this order")
        shares, price = fill
        self._journal_other(sequence, m)
        log.warning("OUCH Broken Trade: token %r match %d (%d at %d), reason %r", token, match, shares, price, m.reason)
        events.append(BrokenTrade(token, order.locate, order.side, shares, price, match, m.reason, sequence))

    def _on_trade_correction(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        token, match = m.order_token, m.match_number
        order = self.orders.get(token)
        fill = self._fills.get((token, match))
        if fill is None:
            raise _Anomaly("unknown_match", f"correction of match number {match}: no such execution of this order")
        self._fills[(token, match)] = (m.executed_shares, m.execution_price)
        self._journal_other(sequence, m)
        events.append(
            TradeCorrection(
                token,
                order.locate,
                order.side,
                match,
                m.executed_shares,
                m.execution_price,
                fill[0],
                fill[1],
                m.reason,
                sequence,
            )
        )

    def _on_rejected(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        token = m.order_token
        existing = self._replacing.get(token)
        if existing is not None:  # a Replace Order refused: the existing order stays as it was
            self.orders.replace_refused(existing)
            del self._replacing[token]
            self.journal.replace_refused(sequence, existing, m.reason)
            events.append(Reject(token, m.reason, existing, sequence))
            return
        self.orders.rejected(token)
        self.journal.order_rejected(sequence, token, m.reason)
        events.append(Reject(token, m.reason, "", sequence))

    def _on_cancel_pending(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        order = self.orders.get(m.order_token)
        self._journal_other(sequence, m)
        events.append(OrderUpdate(order.token, order.state, order.open_shares, "cancel_pending", "", sequence))

    def _on_cancel_reject(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        order = self.orders.cancel_refused(m.order_token)
        self._journal_other(sequence, m)
        events.append(OrderUpdate(order.token, order.state, order.open_shares, "cancel_reject", "", sequence))

    def _on_priority_update(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        order = self.orders.priority_updated(m.order_token, m.price, m.order_reference_number)
        self._journal_other(sequence, m)
        events.append(OrderUpdate(order.token, order.state, order.open_shares, "order_priority_update", "", sequence))

    def _on_order_modified(self, m: Any, sequence: int, events: list[GatewayEvent]) -> None:
        self.orders.get(m.order_token)
        raise _Anomaly("unexpected_modify", "Order Modified, but this agent never sends Modify Order")


def _check_carriable(request: OrderRequest) -> None:
    if not 0 < request.shares <= ouch.MAX_ORDER_SHARES or not 0 < request.price <= ouch.MAX_LIMIT_PRICE:
        raise ValueError(
            f"{request.kind.value} order: {request.shares} shares at {request.price}; OUCH expects shares in "
            f"1..{ouch.MAX_ORDER_SHARES} and a price in 1..{ouch.MAX_LIMIT_PRICE}"
        )
