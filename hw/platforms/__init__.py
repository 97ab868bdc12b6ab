"""Board platforms amaranth-boards does not have."""
