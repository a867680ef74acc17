"""pybpf.jit."""
