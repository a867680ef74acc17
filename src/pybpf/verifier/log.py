"""The verifier log (``kernel/bpf/log.c``): register/stack state lines in the kernel's text.

Only the text is produced here; the syscall layer applies the user buffer rules.
"""

from __future__ import annotations

from typing import Any

from pybpf.verifier.liveness import compute_live_regs
from pybpf.verifier.regs import (
    BPF_ADD_CONST,
    MEM_ALLOC,
    NON_OWN_REF,
    S32_MAX,
    S32_MIN,
    S64_MAX,
    S64_MIN,
    Reg,
    RegType,
    base_type,
    reg_type_str,
)
from pybpf.verifier.state import STACK_INVALID, STACK_SPILL, FuncState
from pybpf.verifier.tnum import U32, U64, Tnum

BPF_LOG_LEVEL1 = 1
BPF_LOG_LEVEL2 = 2
BPF_LOG_STATS = 4
BPF_LOG_MIN_ALIGNMENT = 8
BPF_LOG_ALIGNMENT = 40


def unum(v: int) -> str:
    v &= U64
    return str(v) if v <= 0xFFFF else f"{v:#x}"


def snum(v: int) -> str:
    if -0x8000 <= v <= 0x7FFF:
        return str(v)
    return f"{v & U64:#x}"


def tnum_str(t: Tnum) -> str:
    if t.mask == 0:
        return unum(t.value)
    return f"({t.value:#x}; {t.mask:#x})"


def _scalar_ranges(r: Reg) -> list[str]:
    def s32v(v: int) -> int:
        return v if -0x8000 <= v <= 0x7FFF else v & U32

    items: list[list[Any]] = [
        ["smin", r.smin, r.smin == S64_MIN],
        ["smax", r.smax, r.smax == S64_MAX],
        ["umin", r.umin, r.umin == 0],
        ["umax", r.umax, r.umax == U64],
        ["smin32", s32v(r.s32_min), r.s32_min == S32_MIN],
        ["smax32", s32v(r.s32_max), r.s32_max == S32_MAX],
        ["umin32", r.u32_min, r.u32_min == 0],
        ["umax32", r.u32_max, r.u32_max == U32],
    ]
    out: list[str] = []
    for i, m1 in enumerate(items):
        if m1[2]:
            continue
        neg1 = m1[0][0] == "s" and int(m1[1]) < 0
        text = f"{m1[0]}="
        for m2 in items[i + 2::2]:
            if m2[2] or (int(m2[1]) & U64) != (int(m1[1]) & U64):
                continue
            neg2 = m2[0][0] == "s" and int(m2[1]) < 0
            if neg2 != neg1:
                continue
            m2[2] = True
            text += f"{m2[0]}="
        v = int(m1[1])
        text += snum(v if v < 0 or v <= S64_MAX else v - (1 << 64)) if m1[0][0] == "s" else unum(v)
        out.append(text)
    return out


def _btf_name(r: Reg) -> str:
    """``btf_type_name(reg->btf, reg->btf_id)``; registers typed before they carried a BTF
    (helper returns described by name only) keep ``btf_name``."""
    if r.btf is not None:
        try:
            return str(r.btf.types[r.btf_id].name)
        except (AttributeError, IndexError):
            return ""
    return r.btf_name


def format_reg(r: Reg, frameno: int) -> str:
    t = r.type
    out = ""
    if t == RegType.SCALAR_VALUE and r.precise:
        out += "P"
    if t == RegType.SCALAR_VALUE and r.var_off.mask == 0:
        v = r.var_off.value
        return out + snum(v - (1 << 64) if v >> 63 else v)
    out += reg_type_str(t)
    if t == RegType.PTR_TO_ARENA:
        return out
    if t == RegType.PTR_TO_STACK:
        if frameno != r.frameno:
            out += f"[{r.frameno}]"
        if r.var_off.mask == 0:
            v = r.var_off.value
            return out + snum((v - (1 << 64) if v >> 63 else v) + r.off)
    if base_type(t) == RegType.PTR_TO_BTF_ID:
        out += _btf_name(r)
    parts: list[str] = []
    if r.id:  # a linked scalar's delta follows its id: ``id=1+4``, ``id=1-4``
        parts.append(f"id={r.id & ~BPF_ADD_CONST}" + (f"{r.off:+d}" if r.id & BPF_ADD_CONST else ""))
    if r.ref_obj_id:
        parts.append(f"ref_obj_id={r.ref_obj_id}")
    if base_type(t) == RegType.PTR_TO_BTF_ID and t & MEM_ALLOC and t & NON_OWN_REF:
        parts.append("non_own_ref")  # type_is_non_owning_ref
    if base_type(t) in (RegType.CONST_PTR_TO_MAP, RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MAP_VALUE) \
            and r.map_ptr is not None:
        name = getattr(r.map_ptr, "name", b"") or b""
        if isinstance(name, bytes):
            name = name.split(b"\0")[0].decode(errors="replace")
        if name:
            parts.append(f"map={name}")
        parts.append(f"ks={r.map_ptr.key_size},vs={r.map_ptr.value_size}")
    if t != RegType.SCALAR_VALUE and r.off:
        parts.append(f"off={snum(r.off)}")
    if base_type(t) in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
        parts.append(f"r={unum(r.range)}")
    if base_type(t) == RegType.PTR_TO_MEM:
        parts.append(f"sz={unum(r.mem_size)}")
    if t == RegType.CONST_PTR_TO_DYNPTR:  # mem_size holds reg->dynptr.type (verifier/dynptr.py)
        from pybpf.verifier.dynptr import dynptr_type_str
        parts.append(f"type={dynptr_type_str(r.mem_size)}")
    if r.var_off.mask == 0:
        if r.var_off.value:
            v = r.var_off.value
            parts.append(f"imm={snum(v - (1 << 64) if v >> 63 else v)}")
    else:
        parts.extend(_scalar_ranges(r))
        if not r.var_off.is_unknown():
            parts.append(f"var_off={tnum_str(r.var_off)}")
    return out + "(" + ",".join(parts) + ")"


def format_state(f: FuncState, refs: list[int] | None = None,
                 regs_mask: int | None = None, stack_mask: int | None = None) -> str:
    """``print_verifier_state`` (without the trailing newline).

    ``regs_mask``/``stack_mask`` (bit i = register i / stack slot i) restrict the output to
    the "scratched" registers and slots, as the kernel does for the per-instruction
    ``; R0=...`` annotation; ``None`` prints everything (``print_all``)."""
    out = ""
    if f.frameno:
        out += f" frame{f.frameno}:"
    for i, r in enumerate(f.regs):
        if r.type == RegType.NOT_INIT:
            continue
        if regs_mask is not None and not (regs_mask >> i) & 1:
            continue
        out += f" R{i}=" + format_reg(r, f.frameno)
    skip = -1
    for i, slot in enumerate(f.stack):
        if i == skip:
            continue
        if all(t == STACK_INVALID for t in slot.types):
            continue
        if stack_mask is not None and not (stack_mask >> i) & 1:
            continue
        if slot.types[7] == "d":  # STACK_DYNPTR: printed once, at its first (upper) slot
            from pybpf.verifier.dynptr import format_dynptr_slot
            out += format_dynptr_slot(f, i + 1)
            skip = i + 1
            continue
        types = "".join(slot.types)
        it = getattr(slot, "iter", None)
        if it is not None and slot.types[7] == "i":  # STACK_ITER: main slot only
            if it.ref_obj_id:
                from pybpf.verifier.iters import format_iter_slot
                out += format_iter_slot((-i - 1) * 8, it)
            continue
        if slot.types[7] == STACK_SPILL and slot.spilled is not None:
            j = slot.types.index(STACK_SPILL)
            out += f" fp{(-i - 1) * 8}={types[:j]}" + format_reg(slot.spilled, f.frameno)
        else:
            out += f" fp{(-i - 1) * 8}={types}"
    if refs and refs[0]:  # a lock taken through a pointer without id has none: not printed
        out += " refs=" + ",".join(str(x) for x in refs if x)
    if f.in_callback:
        out += " cb"
    if f.in_async_callback:
        out += " async_cb"
    return out


def vlog_alignment(pos: int) -> int:
    v = max(pos + BPF_LOG_MIN_ALIGNMENT // 2, BPF_LOG_ALIGNMENT)
    v = (v + BPF_LOG_MIN_ALIGNMENT - 1) // BPF_LOG_MIN_ALIGNMENT * BPF_LOG_MIN_ALIGNMENT
    return v - pos - 1


class VLog:
    """An append-only log with the kernel's level gating, rewind and "scratch" tracking.

    The kernel's log is a byte buffer that the verifier rewinds (``bpf_vlog_reset``): at
    ``log_level`` 1 each finished path is cut back to where its branch was pushed, and a
    successful program's log is cut back to nothing, so only the path to an error remains.
    ``size`` is the current end position; :meth:`reset` truncates to an earlier one.

    ``scratched_regs``/``scratched_stack`` are the kernel's ``env->scratched_regs`` /
    ``scratched_stack_slots`` bitmasks: what an instruction touched (``check_reg_arg``,
    stack reads/writes), printed as ``; R1=...`` after it and then cleared.
    """

    ALL = (1 << 64) - 1

    def __init__(self, level: int) -> None:
        self.level = level
        self.parts: list[str] = []
        self.size = 0
        # ``enabled`` gates the instruction/state trace (``env->log.level & BPF_LOG_LEVEL``);
        # plain messages (errors) are written at any non-zero level, BPF_LOG_STATS included.
        self.enabled = bool(level & (BPF_LOG_LEVEL1 | BPF_LOG_LEVEL2))
        self.active = bool(level)
        self.pop_log = self.active and not level & BPF_LOG_LEVEL2
        self.last_error = ""
        self.scratched_regs = self.ALL
        self.scratched_stack = self.ALL
        self.prev_log_pos = 0
        self.prev_insn_print_pos = 0

    def __call__(self, text: str) -> None:
        if self.active:
            self.parts.append(text)
            self.size += len(text)

    def reset(self, pos: int) -> None:
        """``bpf_vlog_reset``: drop everything after position ``pos``."""
        parts = self.parts
        while parts and self.size - len(parts[-1]) >= pos:
            self.size -= len(parts.pop())
        if self.size > pos:
            last = parts[-1]
            parts[-1] = last[:len(last) - (self.size - pos)]
            self.size = pos

    def mark_all_scratched(self) -> None:
        self.scratched_regs = self.ALL
        self.scratched_stack = self.ALL

    def mark_clean(self) -> None:
        self.scratched_regs = 0
        self.scratched_stack = 0

    def text(self) -> str:
        return "".join(self.parts)


# -- log_level 2 preamble: "func#N @S" and "Live regs before insn:" --------------------------

def live_regs_table(insns: list[Any], fmt: Any, num_params: Any, scc: list[int] | None = None) -> str:
    """The "Live regs before insn:" table of ``compute_live_registers`` (log_level 2):
    a backward fixed point of ``use | (live_after & ~def)`` over the instruction graph,
    each line led by the instruction's loop (SCC) id when it has one."""
    n = len(insns)
    live = compute_live_regs(insns, num_params)
    out = ["Live regs before insn:\n"]
    i = 0
    while i < n:
        regs = "".join(str(j) if live[i] >> j & 1 else "." for j in range(10))
        lead = f"{scc[i]:3d} " if scc and scc[i] else "    "
        out.append(f"{lead}{i:3d}: {regs} {fmt(i)}\n")
        i += 2 if insns[i].code == 0x18 else 1
    return "".join(out)
