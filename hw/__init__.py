"""Boards and bitstream build flows (ECP5 through YoWASP, PYNQ-Z2 through Vivado)."""
