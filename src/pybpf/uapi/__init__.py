"""pybpf.uapi."""
