"""The BTF attach target of ``SEC_ATTACH_BTF`` programs (libbpf's
``libbpf_find_attach_btf_id``).

``tp_btf/sched_switch``, ``fentry/tcp_v4_rcv``, ``lsm/file_open``, ``iter/task``: the part
of the section name after the first ``/`` names a kernel type the verifier needs as the
program's ``attach_btf_id`` — the ``btf_trace_<tp>`` typedef for raw tracepoints, the
``bpf_lsm_<hook>`` function for LSM programs, the ``bpf_iter_<target>`` function for
iterators, the function itself otherwise. libbpf looks it up in vmlinux BTF (then in
module BTFs, which a pybpf instance does not have) before ``BPF_PROG_LOAD``; a name it
cannot find fails the load with ``ESRCH``.
"""

from __future__ import annotations

import errno

from pybpf.btf.raw import Btf, BtfKind
from pybpf.loader.errors import LoaderError
from pybpf.loader.model import ProgramSpec
from pybpf.loader.secdef import ATTACH_BTF_PREFIX, SecFlags
from pybpf.uapi import BpfAttachType

BPF_PROG_TYPE_EXT = 28


def needs_attach_btf(p: ProgramSpec) -> bool:
    return p.sec_def is not None and bool(p.sec_def.flags & SecFlags.ATTACH_BTF) \
        and not p.attach_btf_id


def find_attach_btf_id(p: ProgramSpec, btf: Btf | None) -> int:
    """The ``attach_btf_id`` for ``p``'s section name in ``btf`` (the target kernel's)."""
    if p.type == BPF_PROG_TYPE_EXT:  # freplace: the target is another program's BTF
        raise LoaderError(errno.EINVAL, f"prog '{p.name}': attach program FD is not set")
    _, slash, attach_name = p.sec_name.partition("/")
    if not slash or not attach_name:
        raise LoaderError(errno.EINVAL, f"prog '{p.name}': no BTF attach target in section "
                                        f"'{p.sec_name}'")
    if btf is None:
        raise LoaderError(errno.ESRCH, f"prog '{p.name}': no kernel BTF to find "
                                       f"'{attach_name}' in")
    prefix, kind = ATTACH_BTF_PREFIX.get(BpfAttachType(p.expected_attach_type), ("", "FUNC"))
    ids = btf.find_all(prefix + attach_name, BtfKind[kind])
    if not ids:
        raise LoaderError(errno.ESRCH, f"prog '{p.name}': failed to find kernel BTF type ID "
                                       f"of '{attach_name}': -{errno.ESRCH}")
    return ids[0]
