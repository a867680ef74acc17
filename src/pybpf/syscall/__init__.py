"""pybpf.syscall."""
