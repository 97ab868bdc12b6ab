"""The on-chip order book: instrument table, order table, price levels and top of book."""
