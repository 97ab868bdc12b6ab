"""Card drivers: one API over the simulated card, PYNQ and a network-attached card."""
