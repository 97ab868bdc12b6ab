"""The control and status register bank (AXI4-Lite), generated from proto.registers."""
