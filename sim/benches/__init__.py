"""cocotb test benches (run through wirebook.sim.cocotb_runner)."""
