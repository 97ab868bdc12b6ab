"""The golden model: an exact order-book engine that the gateware is checked against."""
