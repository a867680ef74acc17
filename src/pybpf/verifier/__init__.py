"""pybpf.verifier."""
