"""The card's host link in gateware: proto/card_link.py on the card's host-facing port (port 1).

    rx ── CsrServer: DatagramReceiver (MAC / IPv4 / UDP to the card's CSR_PORT, kept whole in a buffer)
            ─ request read through card_link's field tables (ByteWindow) ─ AxiLiteMaster ─ m_axil_*
            ─ answer kept in a memory (a repeated sequence gets it again) ─ response frame ──┐
            └─ SUBSCRIBE: subscribe ─┐                                                    ├─ TxArbiter ── tx
    bbo ── RecordSender: up to MAX_RECORDS records a packet, flushed when full or idle ──┘ (responses first)

- receiver.py: DatagramReceiver (headers captured at fixed places as beats pass, IPv4 and UDP sums, checks
  judged in three cycles after the frame: a fraction of the feed line's general parsers).
- csr_server.py: CsrServer, ByteWindow; axi_lite_master.py: AxiLiteMaster.
- record_sender.py: RecordSender; framing.py: UdpHeaders, FrameEmitter, RowReader (both senders' frames).
- tx_arbiter.py: TxArbiter; host_link.py: HostLink (all of it), connect_registers, connect_feed_handler.

sim/net_card.py is the software model of what this gateware does on the wire; tests/hw/test_host_link.py
holds the gateware to it.
"""
