"""pybpf.testing."""
