"""pybpf: the Linux eBPF subsystem rebuilt in userspace, in Python."""

from pybpf.errors import AsmError, BpfError, BpfFault

__version__ = "0.1.0"

__all__ = ["AsmError", "BpfError", "BpfFault", "__version__"]
