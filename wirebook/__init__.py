"""wirebook: an FPGA / kernel-bypass market-data edge appliance.

The distribution's import packages live in the repository's top-level folders: wirebook.proto (proto/),
wirebook.model (model/), wirebook.sim (sim/), wirebook.hdl (hdl/), wirebook.hw (hw/), wirebook.driver
(driver/), wirebook.host (host/).
"""

__version__ = "0.1.0"
