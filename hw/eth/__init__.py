"""Ethernet for the board tops: RGMII pins to the core's frame beats and back.

    pins ─ RgmiiPhy (rgmii) ─ GMII bytes, eth_rx ─ MacRx (mac) ─ FrameRxCDC (frame_cdc) ─ core beats
    core beats ─ FrameTxCDC (frame_cdc) ─ MacTx (mac) ─ GMII bytes, eth_tx ─ RgmiiPhy ─ pins

crc32 holds the FCS (zlib.crc32) that MacRx checks and MacTx appends.
"""
