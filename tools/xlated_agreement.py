#!/usr/bin/env python3
"""Compare pybpf's xlated programs with the live kernel's, instruction by instruction.

    .venv/bin/python tools/xlated_agreement.py [--corpus] [--examples] [--list] [--only N,..]
    .venv/bin/python tools/xlated_agreement.py --unpriv [--list]   # without capabilities

``--unpriv``: the corpus's socket-filter and cgroup-skb cases (with their maps) loaded by a
capability-less child in the kernel (``pybpf.testing.unpriv_kernel``; the sysctl
``kernel.unprivileged_bpf_disabled`` is lowered for the duration and always restored) and
by pybpf without CAP_BPF/CAP_PERFMON/CAP_NET_ADMIN: verdict, errno, first message and
``processed`` on all, the xlated program (Spectre masking, ``nospec``) where both accept.
The kernel hides call addresses from that dump (the program's file belongs to the
unprivileged loader), so calls compare by position there.

The same program is loaded in the machine's kernel (raw ``bpf()``, xlated bytes through
``BPF_OBJ_GET_INFO_BY_FD``) and in pybpf (``bpf_check`` for corpus cases, a
:class:`~pybpf.kernel.Kernel` and ``pybpf.load`` for the shipped objects). Both programs
are printed in bpftool's syntax and compared line by line after normalising only what must
differ between two kernels:

- map references: kernel map ids and pybpf map addresses both become the map's role
  (``map[kind]`` / ``map[kind][0]+off``);
- call immediates: the kernel's ``__bpf_call_base``-relative address (looked up in
  ``/proc/kallsyms``, as bpftool does) and pybpf's id both become the callee's name
  (``call __htab_map_lookup_elem``);
- addresses of the kernel variables inlined helpers load (``jiffies``, ``cpu_number``)
  become ``&jiffies`` / ``&cpu_number`` on both sides.

Prints ``xlated equal A/B`` per source, and the kinds of the differences left (the first
differing hunk of each unequal program, classified by what the kernel emitted there).
Needs root and the bpf() syscall for the kernel side; skips what cannot be loaded there.
"""

from __future__ import annotations

import argparse
import ctypes
import difflib
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pybpf.isa.disasm import bpftool_imm64, disasm_kernel  # noqa: E402
from pybpf.isa.insn import Insn, decode  # noqa: E402
from pybpf.testing.verifier_cases import callback_btf  # noqa: E402

LD_IMM64 = 0x18
CALL = 0x85
BPF_F_TEST_RND_HI32 = 1 << 2
_CALL_IMM = re.compile(r"^(\(85\) call [^\s#]+)#\S+$")


# --------------------------------------------------------------------------- normalising


def _u64(first: Insn, second: Insn) -> int:
    return (first.imm & 0xFFFFFFFF) | ((second.imm & 0xFFFFFFFF) << 32)


def render(insns: Sequence[Insn], call_name: Callable[[int], str | None],
           map_ref: Callable[[Insn, Insn], str | None], pcrel_off: bool = False,
           kfunc_name: Callable[[int], str | None] | None = None) -> list[str]:
    """bpftool's text of ``insns`` with calls named and map references by role.

    ``pcrel_off``: bpf-to-bpf calls show ``off`` (the relative target ``jit_subprogs``
    keeps there), as bpftool prints them, instead of ``imm`` (the subprogram index).
    """
    if pcrel_off:
        insns = [i._replace(imm=i.off) if i.code == CALL and i.src == 1 else i for i in insns]

    def imm64(first: Insn, second: Insn, value: int) -> str | None:
        if first.src == 4:  # BPF_PSEUDO_FUNC: bpftool's ``subprog[+N]``
            return bpftool_imm64(first, second, value)
        return map_ref(first, second)

    def target(ins: Insn) -> str | None:  # disasm names only non-negative immediates
        if ins.src == 2:  # kfunc: pybpf keeps the vmlinux BTF id, the kernel an address
            return (kfunc_name or call_name)(ins.imm)
        return call_name(ins.imm) if ins.src == 0 else None

    lines = disasm_kernel(list(insns), helper_name=call_name, pseudo_imm64=imm64,
                          call_target=target)
    return [_CALL_IMM.sub(r"\1", ln) for ln in lines]


def classify(kernel: list[str], ours: list[str]) -> str:
    """The kind of the first difference, named after what the kernel did there."""
    sm = difflib.SequenceMatcher(a=kernel, b=ours, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        k, o = kernel[i1:i2], ours[j1:j2]
        ktext, otext = "\n".join(k), "\n".join(o)
        if tag == "delete" or (len(k) > len(o) and o and all(x in k for x in o)):
            if re.search(r"\^= w|if r\d+ != 0x0|if w\d+ != 0x0|if [rw]\d+ == 0x0 goto pc\+1|"
                         r"== 0xffffffff", ktext) and not o:
                return "div/mod guard"
            if "call __htab" in ktext or "call htab" in ktext or "+= 312" in ktext \
                    or "+= 56" in ktext:
                return "map lookup inlined"
            if "goto pc+0" in otext:
                return "nop removal"
        if re.search(r"\(bc\) (w\d+) = \1$", ktext, re.M) and "atomic_cmpxchg" in "\n".join(
                kernel[max(i1 - 1, 0):i2]):
            return "zext after cmpxchg"
        if "&jiffies" in ktext or "&cpu_number" in ktext:
            return "helper inlined"
        if "+35)" in ktext or "+= 304" in ktext:
            return "map lookup inlined"
        if tag == "insert" or (len(o) > len(k)):
            if "goto pc+0" in otext or "goto pc-1" in otext:
                return "nop/dead code (pybpf kept)"
            return "dead code (pybpf kept)"
        if all(a.startswith("(85) call") and b.startswith("(85) call") for a, b in zip(k, o)) \
                and len(k) == len(o):
            return "call name: " + ", ".join(f"{a.split()[-1]}≠{b.split()[-1]}"
                                             for a, b in zip(k, o))[:80]
        if "call __htab" in ktext or "+= 312" in ktext or "call array_" in ktext:
            return "map lookup inlined"
        if re.search(r"\^= w|!= 0x0 goto", ktext):
            return "div/mod guard"
        if re.search(r"\(r1 \+\d+\)|\(r6 \+\d+\)", ktext + otext):
            return "ctx access"
        if "goto pc" in ktext or "goto pc" in otext:
            return "branch offsets"
        return "other: " + (k[0] if k else o[0])[:60]
    return "equal"


@dataclass
class Outcome:
    name: str
    kernel: list[str] | None
    ours: list[str] | None
    skip: str = ""
    kind: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return self.kernel is not None and self.kernel == self.ours


#: the per-CPU address move (``BPF_MOV64_PERCPU_REG``): pybpf prints it as 6.18's verifier
#: log does; the installed bpftool (7.1) predates it and prints a plain register move
_PERCPU_MOV = re.compile(r"([rw]\d+) = &\(void __percpu \*\)\(([rw]\d+)\)")


_KVARS: dict[int, str] | None = None
_KVAR_LINE = re.compile(r"^(\((?:18|b7)\) [rw]\d+ = )(0x[0-9a-f]+|-?\d+)$")


def kernel_variables() -> dict[int, str]:
    """Addresses of the kernel variables inlined helpers load (``jiffies``,
    ``cpu_number``), on both sides, to the variable's name.

    The kernel's are read off the xlated dump of a one-call program (data symbols are not
    in ``/proc/kallsyms`` without ``CONFIG_KALLSYMS_ALL``); pybpf's are
    :mod:`pybpf.runtime.kvars`'s. ``cpu_number`` goes in through a 32-bit immediate, so
    its key is the address truncated to 32 bits.
    """
    global _KVARS
    if _KVARS is not None:
        return _KVARS
    from pybpf.runtime.kvars import cpu_number_addr, jiffies_addr
    from pybpf.testing import kernel as K

    out: dict[int, str] = {jiffies_addr(): "jiffies"}
    cpu = cpu_number_addr()
    if cpu is not None:
        out[cpu & 0xFFFFFFFF] = "cpu_number"
    for fid, name in ((118, "jiffies"), (8, "cpu_number")):
        with K.KernelFds() as fds:
            res = fds.prog_load(1, _pack([Insn(CALL, 0, 0, 0, fid), Insn(0x95, 0, 0, 0, 0)]))
            if not res.ok:
                continue
            first = K.prog_xlated(res.fd)
        if first and first[0].code == LD_IMM64:
            out[_u64(first[0], first[1])] = name
        elif first and first[0].code == 0xB7:
            out[first[0].imm & 0xFFFFFFFF] = name
    _KVARS = out
    return out


_TIMER_AUX = re.compile(r"^\(18\) r3 = 0x[0-9a-f]+$")


def _name_kvars(lines: list[str]) -> list[str]:
    """``r0 = 0xffffffff83009980`` / ``r0 = -2085568460`` -> ``r0 = &jiffies`` /
    ``r0 = &cpu_number`` where the value is a kernel variable's address; the ``r3 =
    prog->aux`` before ``call bpf_timer_set_callback`` -> ``r3 = &prog_aux``."""
    kv = kernel_variables()
    out = []
    for n, ln in enumerate(lines):
        if _TIMER_AUX.match(ln) and n + 1 < len(lines) \
                and lines[n + 1].startswith("(85) call bpf_timer_set_callback"):
            out.append("(18) r3 = &prog_aux")
            continue
        m = _KVAR_LINE.match(ln)
        if m:
            value = int(m.group(2), 0)
            name = kv.get(value & 0xFFFFFFFFFFFFFFFF) if ln.startswith("(18)") \
                else kv.get(value & 0xFFFFFFFF)
            if name:
                ln = f"{m.group(1)}&{name}"
        out.append(ln)
    return out


def _finish(o: Outcome) -> Outcome:
    if o.ours is not None:
        o.ours = _name_kvars([_PERCPU_MOV.sub(r"\1 = \2", ln) for ln in o.ours])
    if o.kernel is not None:
        o.kernel = _name_kvars(o.kernel)
    if KEEP_RND_HI32:
        o.ours = [_RND_MOV.sub(r"\1RND", ln) for ln in o.ours] if o.ours is not None else None
        o.kernel = [_RND_MOV.sub(r"\1RND", ln) for ln in o.kernel] if o.kernel is not None else None
    if o.kernel is not None and o.ours is not None:
        o.kind = "equal" if o.kernel == o.ours else classify(o.kernel, o.ours)
    return o


# --------------------------------------------------------------------------- pybpf side


def pybpf_call_namer(prog_type: int) -> Callable[[int], str | None]:
    """What pybpf's ``prog dump xlated`` names a call (kernel function names)."""
    from pybpf.helpers.internal import xlated_call_name

    return lambda imm: xlated_call_name(imm, prog_type)


def pybpf_kfunc_namer(kernel: Any = None) -> Callable[[int], str | None]:
    """pybpf's kfunc calls keep the kfunc's vmlinux BTF id: its FUNC's name."""
    from pybpf.btf.raw import BtfFunc

    if kernel is None:
        from pybpf.kernel import default_kernel

        kernel = default_kernel()
    obj = getattr(kernel, "vmlinux_btf", None)
    btf = obj.parsed() if obj is not None else None

    def name(imm: int) -> str | None:
        if btf is None or not 0 < imm < len(btf.types):
            return None
        t = btf.types[imm]
        return t.name if isinstance(t, BtfFunc) else None

    return name


def _pybpf_map_ref(maps: dict[str, Any]) -> Callable[[Insn, Insn], str | None]:
    by_addr: dict[int, str] = {}
    values: list[tuple[int, int, str]] = []
    for kind, m in maps.items():
        by_addr[int(m.addr)] = kind
        dva = getattr(m, "direct_value_addr", None)
        if callable(dva):
            try:
                base = int(dva(0))
            except Exception:
                continue
            values.append((base, int(getattr(m, "value_size", 0)), kind))

    def ref(first: Insn, second: Insn) -> str | None:
        if first.src != 0:
            return None
        v = _u64(first, second)
        if v in by_addr:
            return f"map[{by_addr[v]}]"
        for base, size, kind in values:
            if base <= v < base + size:
                return f"map[{kind}][0]+{v - base}"
        return None

    return ref


# --------------------------------------------------------------------------- kernel side


def _kernel_map_ref(ids: dict[int, str]) -> Callable[[Insn, Insn], str | None]:
    def ref(first: Insn, second: Insn) -> str | None:
        kind = ids.get(first.imm & 0xFFFFFFFF, f"id{first.imm}")
        if first.src == 1:
            return f"map[{kind}]"
        if first.src == 2:
            return f"map[{kind}][0]+{second.imm & 0xFFFFFFFF}"
        return None

    return ref


_LIVE_NAME: Callable[[int], str | None] | None = None


def live_call_name(imm: int) -> str | None:
    global _LIVE_NAME
    if _LIVE_NAME is None:
        from pybpf.cli._proginfo import live_helper_name

        _LIVE_NAME = live_helper_name()
    return _LIVE_NAME(imm & 0xFFFFFFFF)  # it reads the immediate as a u32


def kernel_xlated(fd: int) -> tuple[list[Insn], list[int]]:
    """Xlated instructions and map ids of a live program (``bpf_insn_prepare_dump`` form)."""
    from pybpf.testing import kernel as K

    info = K.prog_info(fd)
    n, nmaps = info.xlated_prog_len, info.nr_map_ids
    buf = ctypes.create_string_buffer(max(n, 1))
    ids = (ctypes.c_uint32 * max(nmaps, 1))()
    full = type(info)()
    full.xlated_prog_len, full.xlated_prog_insns = n, ctypes.addressof(buf)
    full.nr_map_ids, full.map_ids = nmaps, ctypes.addressof(ids)
    K.obj_get_info_by_fd(fd, full)
    return decode(buf.raw[:n]), list(ids)[:nmaps]


def _kernel_maps(case: dict[str, Any], fds: Any) -> tuple[dict[str, int], str]:
    """Create the case's fixup maps in the live kernel: kind -> fd (or a reason to skip)."""
    from pybpf.testing import kernel as K

    out: dict[str, int] = {}
    for fx in case["fixups"]:
        kind = fx["kind"]
        if kind == "kfunc_btf_id":
            return out, "kfunc"
        if kind in out:
            continue
        spec = fx["map"]
        if spec.get("btf"):
            return out, "btf map"
        inner = 0
        if spec.get("inner_map"):
            s = spec["inner_map"]
            inner = fds.add(K.map_create(s["type"], s["key_size"], s["value_size"],
                                         s["max_entries"], s.get("flags", 0)))
        fd, err = K.map_create_raw(spec["type"], spec["key_size"], spec["value_size"],
                                   spec["max_entries"], spec.get("flags", 0), inner)
        if fd < 0:
            return out, f"map create errno {err}"
        out[kind] = fds.add(fd)
        for ent in spec.get("init") or []:
            if isinstance(ent, dict):
                K.map_update_raw(fd, bytes.fromhex(ent["key"]), bytes.fromhex(ent["value"]))
    return out, ""


def _pack(insns: Sequence[Insn]) -> bytes:
    import struct

    return b"".join(struct.pack("<BBhi", i.code, (i.dst & 15) | ((i.src & 15) << 4), i.off,
                                i.imm) for i in insns)


def corpus_case(case: dict[str, Any]) -> Outcome:
    """One accepted corpus case through the live kernel and ``bpf_check``."""
    from pybpf.testing import kernel as K
    from pybpf.verifier import corpus
    from pybpf.verifier.api import bpf_check

    name = f"{case['index']} {case['descr']}"
    k = case.get("kernel")
    if not k or not k.get("accepted"):
        return Outcome(name, None, None, "not accepted by 6.18")
    with K.KernelFds() as fds:
        kmaps, why = _kernel_maps(case, fds)
        if why:
            return Outcome(name, None, None, why)
        insns = decode(bytes.fromhex(case["insns"]))
        for fx in case["fixups"]:
            i = fx["insn_index"]
            insns[i] = insns[i]._replace(imm=kmaps[fx["kind"]])
        res = fds.prog_load(case["prog_type"], _pack(insns), prog_flags=_flags(case),
                            expected_attach_type=case.get("expected_attach_type") or 0)
        if not res.ok and res.errno == 22 and _subprog_starts(insns) != [0]:
            res = _load_with_func_info(fds, case, insns)
        if not res.ok:
            return Outcome(name, None, None, f"kernel load errno {res.errno}")
        kinsns, _ = kernel_xlated(res.fd)
        ids = {K.map_info(fd).id: kind for kind, fd in kmaps.items()}
        ktext = render(kinsns, live_call_name, _kernel_map_ref(ids))
    prep = corpus.prepare(case)
    prep.inp.prog_flags = _flags(case)
    if prep.stub_kinds:
        return Outcome(name, ktext, None, "pybpf stand-in map")
    r = bpf_check(prep.inp)
    if r.errno:
        return Outcome(name, ktext, None, f"pybpf rejects (errno {r.errno})")
    kinds = {}
    for fx in case["fixups"]:
        fd = next(f for f, m in prep.maps.items() if f == _fd_of(prep, fx))
        kinds[fx["kind"]] = prep.maps[fd]
    from pybpf.syscall.info import jit_subprog_calls

    ours = render(jit_subprog_calls(list(r.insns)), pybpf_call_namer(case["prog_type"]),
                  _pybpf_map_ref(kinds), kfunc_name=pybpf_kfunc_namer())
    return _finish(Outcome(name, ktext, ours, extra={"maps": bool(case["fixups"])}))


def _subprog_starts(insns: Sequence[Insn]) -> list[int]:
    starts = {0}
    for i, ins in enumerate(insns):
        if (ins.code == CALL and ins.src == 1) or (ins.code == LD_IMM64 and ins.src == 4):
            starts.add(i + ins.imm + 1)
    return sorted(starts)


def _load_with_func_info(fds: Any, case: dict[str, Any], insns: Sequence[Insn]) -> Any:
    """Cases with subprograms (callbacks: ``bpf_loop``…) need BTF func_info in the live
    kernel (``missing btf func_info``); the corpus has none. Synthetic BTF: ``main`` for
    the program, a static ``cb(int, void *)`` for every other subprogram (the kernel
    checks a static callback's arguments against it only to log)."""
    import os
    import struct

    from pybpf.testing import kernel as K

    btf = K.btf_load(callback_btf())
    if not btf.ok:
        return btf
    finfo = b"".join(struct.pack("<II", s, 3 if s == 0 else 5) for s in _subprog_starts(insns))
    try:
        return fds.prog_load(case["prog_type"], _pack(insns), prog_flags=_flags(case),
                             expected_attach_type=case.get("expected_attach_type") or 0,
                             prog_btf_fd=btf.fd, func_info=finfo, func_info_rec_size=8)
    finally:
        os.close(btf.fd)


#: ``--rnd-hi32``: load with the cases' own ``BPF_F_TEST_RND_HI32`` and compare the poison
#: sequences modulo their random immediates
KEEP_RND_HI32 = False
_RND_MOV = re.compile(r"^(.*\(b7\) r11 = )-?\d+$")


def _flags(case: dict[str, Any]) -> int:
    """The case's flags, by default without ``BPF_F_TEST_RND_HI32``: that test flag fills
    the upper halves of 32-bit results with random bits (``opt_subreg_zext_lo32_rnd_hi32``),
    which no two loads share (``--rnd-hi32`` keeps it and blanks the random values)."""
    if KEEP_RND_HI32:
        return int(case["prog_flags"])
    return int(case["prog_flags"]) & ~BPF_F_TEST_RND_HI32


def _fd_of(prep: Any, fx: dict[str, Any]) -> int:
    return int(prep.inp.insns[fx["insn_index"]].imm)


# --------------------------------------------------------------------------- unprivileged

#: program types an unprivileged user may load (``bpf_unpriv_prog_type``... socket filter,
#: cgroup skb)
UNPRIV_PROG_TYPES = (1, 8)


def unpriv_cases(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Corpus cases of the program types an unprivileged user may load."""
    return [c for c in cases if int(c["prog_type"]) in UNPRIV_PROG_TYPES
            and int(c["insn_cnt"]) < 4000
            and not any(fx["kind"] == "kfunc_btf_id" for fx in c["fixups"])]


def _pybpf_unpriv(case: dict[str, Any]) -> tuple[Any, Any]:
    """``bpf_check`` of a case without capabilities: (result, prepared input)."""
    from pybpf.verifier import corpus
    from pybpf.verifier.api import bpf_check

    prep = corpus.prepare(case)
    inp = prep.inp
    inp.prog_flags = _flags(case)
    inp.bpf_capable = inp.perfmon_capable = inp.net_admin = False
    inp.log_level = 1
    return bpf_check(inp), prep


def unpriv_corpus(cases: list[dict[str, Any]]) -> tuple[list[Outcome], dict[str, int]]:
    """Every case loaded without capabilities in the live kernel (a capability-less child,
    ``pybpf.testing.unpriv_kernel``) and in pybpf: the xlated programs of what both accept,
    and the verdict/errno/first-message agreement on all of them."""
    from pybpf.testing import kernel as K
    from pybpf.testing.unpriv_kernel import UnprivJob, load_unprivileged

    outs: list[Outcome] = []
    stats = {"cases": 0, "verdict": 0, "rejected": 0, "errno": 0, "message": 0, "accepted": 0,
             "processed": 0}
    with K.KernelFds() as fds:
        jobs, ready = [], []
        for c in cases:
            name = f"{c['index']} {c['descr']}"
            kmaps, why = _kernel_maps(c, fds)
            if why:
                outs.append(Outcome(name, None, None, why))
                continue
            insns = decode(bytes.fromhex(c["insns"]))
            for fx in c["fixups"]:
                i = fx["insn_index"]
                insns[i] = insns[i]._replace(imm=kmaps[fx["kind"]])
            jobs.append(UnprivJob(int(c["prog_type"]), _pack(insns), _flags(c), 1,
                                  c.get("expected_attach_type") or 0))
            ready.append((c, name, {K.map_info(fd).id: kind for kind, fd in kmaps.items()}))
        results = load_unprivileged(jobs)
    for (c, name, ids), kr in zip(ready, results):
        stats["cases"] += 1
        r, prep = _pybpf_unpriv(c)
        p_ok = r.errno == 0
        if p_ok != kr.ok:
            outs.append(Outcome(name, None, None, f"verdict kernel={kr.ok} pybpf={p_ok} "
                                f"{_last_line(kr.log)!r} / {r.extra.get('error_line', '')!r}"))
            continue
        stats["verdict"] += 1
        m = _PROCESSED.search(kr.log)
        if m and int(m.group(1)) == r.extra.get("insn_processed", r.verified_insns):
            stats["processed"] += 1
        elif m:
            outs.append(Outcome(name, None, None, "processed differs"))
            outs[-1].extra["processed"] = (int(m.group(1)), r.verified_insns)
        if not kr.ok:
            stats["rejected"] += 1
            stats["errno"] += kr.errno == r.errno
            stats["message"] += _last_line(kr.log) == r.extra.get("error_line", "")
            if kr.errno != r.errno or _last_line(kr.log) != r.extra.get("error_line", ""):
                outs.append(Outcome(name, None, None, f"message kernel={kr.errno} "
                                    f"{_last_line(kr.log)!r} pybpf={r.errno} "
                                    f"{r.extra.get('error_line', '')!r}"))
            continue
        stats["accepted"] += 1
        if prep.stub_kinds:
            outs.append(Outcome(name, None, None, "pybpf stand-in map"))
            continue
        ktext = render(kr.xlated, live_call_name, _kernel_map_ref(ids))
        kinds = {fx["kind"]: prep.maps[_fd_of(prep, fx)] for fx in c["fixups"]}
        from pybpf.syscall.info import jit_subprog_calls

        ours = render(jit_subprog_calls(list(r.insns)), pybpf_call_namer(c["prog_type"]),
                      _pybpf_map_ref(kinds), kfunc_name=pybpf_kfunc_namer())
        if any(ln.startswith("(85) call __bpf_call_base") for ln in ktext):
            # the program's file belongs to the unprivileged loader: bpf_insn_prepare_dump
            # hides call addresses (bpf_dump_raw_ok), so calls compare by position only
            ktext = [_HIDDEN_CALL.sub(r"\1", ln) for ln in ktext]
            ours = [_HIDDEN_CALL.sub(r"\1", ln) for ln in ours]
        outs.append(_finish(Outcome(name, ktext, ours, extra={"maps": bool(c["fixups"])})))
    return outs, stats


_PROCESSED = re.compile(r"^processed (\d+) insns", re.M)
_HIDDEN_CALL = re.compile(r"^(\(85\) call) [^\s#]+$")


def _last_line(log: str) -> str:
    """The first error message: the last log line before the statistics."""
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("processed ")]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- objects


def _bpftool(*args: str) -> Any:
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=False,
                         timeout=60)
    if out.returncode:
        raise RuntimeError(out.stderr.strip() or out.stdout.strip())
    return json.loads(out.stdout) if out.stdout.strip() else None


def object_programs(path: Path) -> list[Outcome]:
    """Every program of ``path``: libbpf (bpftool loadall) vs ``pybpf.load``."""
    import os
    import shutil

    pin = f"/sys/fs/bpf/pybpf_xlated_{os.getpid()}_{path.stem}"
    outs: list[Outcome] = []
    try:
        _bpftool("prog", "loadall", str(path), pin)
    except RuntimeError as e:
        return [Outcome(path.name, None, None, f"bpftool loadall: {str(e)[:60]}")]
    try:
        kernel: dict[str, list[str]] = {}
        for entry in sorted(os.listdir(pin)):
            show = _bpftool("prog", "show", "pinned", f"{pin}/{entry}")
            dump = _bpftool("prog", "dump", "xlated", "id", str(show["id"]))
            names = {}
            for mid in show.get("map_ids", []):
                names[mid] = _bpftool("map", "show", "id", str(mid))["name"]
            def by_name(m: re.Match[str], names: dict[int, str] = names) -> str:
                return f"map[{names.get(int(m.group(1)), m.group(1))}]"

            lines = [re.sub(r"map\[id:(\d+)\]", by_name, _CALL_IMM.sub(r"\1", rec["disasm"]))
                     for rec in dump]
            kernel[show["name"]] = lines
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    for name, ours in pybpf_object(path).items():
        key = name[:15]
        outs.append(_finish(Outcome(f"{path.name}:{name}", kernel.get(key), ours,
                                    "" if key in kernel else "not loaded by libbpf")))
    return outs


def pybpf_object(path: Path) -> dict[str, list[str] | None]:
    """pybpf's ``prog dump xlated`` text of every program of ``path`` (maps by name)."""
    import pybpf
    from pybpf.kernel import Kernel

    out: dict[str, list[str] | None] = {}
    k = Kernel()
    try:
        obj = pybpf.load(str(path), kernel=k)
    except Exception as e:  # reported as a skip
        return {path.stem: None} if not str(e) else {f"{path.stem} ({str(e)[:40]})": None}
    with obj:
        for p in obj.progs:
            bp = _bpf_prog(p)
            if bp is None:
                out[p.name] = None
                continue
            maps = {km.bmap.name.decode(errors="replace") if isinstance(km.bmap.name, bytes)
                    else str(km.bmap.name): km for km in bp.used_maps}
            from pybpf.syscall.info import insn_prepare_dump

            ids = {km.id: name for name, km in maps.items()}
            out[p.name] = render(insn_prepare_dump(bp), pybpf_call_namer(bp.type),
                                 _kernel_map_ref(ids), pcrel_off=True,
                                 kfunc_name=pybpf_kfunc_namer(k))
    return out


def _bpf_prog(p: Any) -> Any:
    for attr in ("bpf_prog", "prog", "_prog", "obj"):
        bp = getattr(p, attr, None)
        if bp is not None and hasattr(bp, "xlated"):
            return bp
    return p if hasattr(p, "xlated") else None


# --------------------------------------------------------------------------- main


def report(title: str, outs: list[Outcome], listing: bool) -> tuple[int, int]:
    compared = [o for o in outs if o.kernel is not None and o.ours is not None]
    eq = sum(o.equal for o in compared)
    print(f"{title}: xlated equal {eq}/{len(compared)} "
          f"({len(outs) - len(compared)} not compared)")
    kinds = Counter(o.kind for o in compared if not o.equal)
    for kind, n in kinds.most_common():
        print(f"    {n:4d}  {kind}")
    skips = Counter(o.skip for o in outs if o.skip)
    if skips:
        print("    not compared: " + ", ".join(f"{k} {n}" for k, n in skips.most_common()))
    if listing:
        for o in compared:
            if not o.equal:
                print(f"--- {o.name} [{o.kind}]")
                for line in difflib.unified_diff(o.kernel or [], o.ours or [], "kernel",
                                                 "pybpf", lineterm="", n=1):
                    print("   " + line)
    return eq, len(compared)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", action="store_true", help="only the verifier corpus")
    ap.add_argument("--examples", action="store_true", help="only examples/ and bench/progs/")
    ap.add_argument("--list", action="store_true", help="print a diff of every difference")
    ap.add_argument("--only", default="", help="comma-separated corpus indices")
    ap.add_argument("--maps", choices=("all", "none", "only"), default="all",
                    help="corpus cases with fixup maps too (default), none, or only those")
    ap.add_argument("--rnd-hi32", action="store_true",
                    help="keep the cases' BPF_F_TEST_RND_HI32 (poison compared modulo its values)")
    ap.add_argument("--unpriv", action="store_true",
                    help="socket-filter/cgroup-skb corpus cases loaded without capabilities "
                         "(Spectre masking, nospec, speculative paths)")
    args = ap.parse_args(argv)
    global KEEP_RND_HI32
    KEEP_RND_HI32 = args.rnd_hi32
    from pybpf.testing import kernel as K

    ok, why = K.available()
    if not ok:
        print(f"live kernel unavailable: {why}")
        return 2
    if args.unpriv:
        from pybpf.testing.unpriv_kernel import available as unpriv_available
        from pybpf.verifier import corpus

        ok, why = unpriv_available()
        if not ok:
            print(f"unprivileged loads unavailable: {why}")
            return 2
        cases = unpriv_cases(corpus.load())
        if args.only:
            want = {int(x) for x in args.only.split(",")}
            cases = [c for c in cases if c["index"] in want]
        outs, st = unpriv_corpus(cases)
        print(f"unprivileged: verdict {st['verdict']}/{st['cases']}, message "
              f"{st['message']}/{st['rejected']}, errno {st['errno']}/{st['rejected']}, "
              f"processed {st['processed']}/{st['verdict']}")
        if args.list:
            for o in outs:
                if o.skip.startswith(("verdict", "message")):
                    print(f"{o.skip.split()[0].upper()} {o.name}: {o.skip}")
                elif o.skip == "processed differs":
                    print(f"PROCESSED {o.name}: kernel, pybpf = {o.extra['processed']}")
        report("unprivileged (accepted by both)", [o for o in outs if o.skip != "processed differs"],
               args.list)
        return 0
    both = not args.corpus and not args.examples
    if args.corpus or both:
        from pybpf.verifier import corpus

        cases = corpus.load()
        if args.only:
            want = {int(x) for x in args.only.split(",")}
            cases = [c for c in cases if c["index"] in want]
        outs = []
        for c in cases:
            if not (c.get("kernel") or {}).get("accepted"):
                continue
            if (args.maps == "none" and c["fixups"]) or (args.maps == "only" and not c["fixups"]):
                continue
            try:
                outs.append(corpus_case(c))
            except Exception as e:  # a crash is a finding, keep going
                outs.append(Outcome(f"{c['index']}", None, None, f"crash {type(e).__name__}"))
        report("corpus (map-free)", [o for o in outs if not o.extra.get("maps")
                                      and "map" not in o.skip], args.list)
        report("corpus (with maps)", [o for o in outs if o.extra.get("maps")
                                       or "map" in o.skip], args.list)
        report("corpus (all accepted)", outs, False)
    if args.examples or both:
        outs = []
        for d in ("examples", "bench/progs"):
            for obj in sorted((ROOT / d).glob("*.o")):
                outs += object_programs(obj)
        report("objects (examples/, bench/progs/)", outs, args.list)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
