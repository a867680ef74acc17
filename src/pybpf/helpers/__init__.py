"""pybpf.helpers."""
