"""pybpf.core."""
