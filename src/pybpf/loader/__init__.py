"""pybpf.loader."""
