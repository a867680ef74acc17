"""pybpf.uapi: the Linux BPF uAPI of the reference kernel, generated from its BTF.

Everything lives in :mod:`pybpf.uapi.linux_bpf` (regenerate it with
``python tools/gen_uapi.py``); this package re-exports all of it so callers write
``from pybpf.uapi import BpfCmd, bpf_attr, BPF_F_NO_PREALLOC``.
"""

from pybpf.uapi import linux_bpf
from pybpf.uapi.linux_bpf import *  # noqa: F403

__all__ = list(linux_bpf.__all__)
