"""pybpf.cli."""
