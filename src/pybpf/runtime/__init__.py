"""pybpf.runtime."""
