"""The ``pybpf`` console script: bpftool's grammar over pybpf instances."""
