"""A program's own BTF records: ``func_info`` and ``line_info`` (``check_btf_info``).

``BPF_PROG_LOAD`` may come with ``prog_btf_fd`` and two record arrays. ``func_info`` gives
each subprogram its BTF ``FUNC`` — the name the log prints and, through the FUNC's linkage,
whether it is *global*: a global function is verified once, on its own, from its BTF
prototype (:mod:`.global_funcs`), instead of inside every caller. ``line_info`` maps
instructions to source lines, which the log prints as ``; <line> @ <file>:<n>`` before
the first instruction of each new line (``verbose_linfo``).

The kernel checks them in two steps, and so do we: ``check_btf_func_early`` (record
size, order, type ids) before the subprograms are known, then ``check_btf_func`` (one
record per subprogram, at its start) and ``check_btf_line`` after ``check_subprogs``.
Without any record, subprograms may not use ``LD_ABS`` or tail calls
(``check_abnormal_return``): their callers could not know they return an ``int``.
"""

from __future__ import annotations

import bisect
import errno
from typing import TYPE_CHECKING, Any

from pybpf.btf.ext import LineInfo
from pybpf.btf.raw import BtfEnum, BtfFunc, BtfFuncProto, BtfInt
from pybpf.verifier.cfg import VerifyError

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

MIN_BPF_FUNCINFO_SIZE = 8
MAX_FUNCINFO_REC_SIZE = 252
BPF_FUNC_INFO_SIZE = 8  # struct bpf_func_info
MIN_BPF_LINEINFO_SIZE = 16  # offsetofend(struct bpf_line_info, line_col)
BPF_LINE_INFO_SIZE = 16
MAX_LINEINFO_REC_SIZE = MAX_FUNCINFO_REC_SIZE
BTF_FUNC_STATIC = 0
BTF_FUNC_GLOBAL = 1


class BtfInfoError(VerifyError):
    """A record the kernel refuses: ``errno``, and the message already logged."""


def _fail(v: Verifier, err: int, msg: str) -> BtfInfoError:
    if msg:
        v.verbose(msg)
    return BtfInfoError(err)


def _u32(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 4], "little")


def _records(raw: bytes, cnt: int, rec_size: int) -> list[bytes]:
    """The ``cnt`` user records; a short copy is the kernel's ``EFAULT``."""
    if len(raw) < cnt * rec_size:
        raise BtfInfoError(errno.EFAULT)
    return [raw[i * rec_size:(i + 1) * rec_size] for i in range(cnt)]


def prog_btf(v: Verifier) -> Any:
    """The program's parsed BTF (``prog->aux->btf``), or ``None``."""
    obj = v.inp.prog_btf
    if obj is None:
        return None
    parsed = getattr(obj, "parsed", None)
    return parsed() if callable(parsed) else obj


def _type(btf: Any, type_id: int) -> Any:
    try:
        return btf[type_id] if type_id > 0 else None
    except (IndexError, KeyError, TypeError):
        return None


def check_abnormal_return(v: Verifier) -> None:
    for sp in v.cfg.subprogs[1:]:
        if sp.has_ld_abs:
            raise _fail(v, errno.EINVAL, "LD_ABS is not allowed in subprogs without BTF\n")
        if sp.has_tail_call:
            raise _fail(v, errno.EINVAL, "tail_call is not allowed in subprogs without BTF\n")


def has_btf_info(v: Verifier) -> bool:
    return bool(v.inp.func_info_cnt or v.inp.line_info_cnt)


def check_btf_func_early(v: Verifier) -> None:
    """Record size, strictly increasing offsets starting at 0, ``FUNC`` type ids."""
    inp = v.inp
    nfuncs = inp.func_info_cnt
    if not nfuncs:
        return
    urec = inp.func_info_rec_size
    if urec < MIN_BPF_FUNCINFO_SIZE or urec > MAX_FUNCINFO_REC_SIZE or urec % 4:
        raise _fail(v, errno.EINVAL, f"invalid func info rec size {urec}\n")
    btf = prog_btf(v)
    recs = _records(inp.func_info_raw, nfuncs, urec)
    out: list[tuple[int, int]] = []
    prev = 0
    for i, rec in enumerate(recs):
        if any(rec[BPF_FUNC_INFO_SIZE:]):
            v.func_info_rec_size_hint = BPF_FUNC_INFO_SIZE
            raise _fail(v, errno.E2BIG, "nonzero tailing record in func info")
        off, tid = _u32(rec, 0), _u32(rec, 4)
        if i == 0:
            if off:
                raise _fail(v, errno.EINVAL, f"nonzero insn_off {off} for the first func info record")
        elif off <= prev:
            raise _fail(v, errno.EINVAL, f"same or smaller insn offset ({off}) than previous func "
                                         f"info record ({prev})")
        t = _type(btf, tid)
        if not isinstance(t, BtfFunc):
            signed = tid - (1 << 32) if tid >= 1 << 31 else tid
            raise _fail(v, errno.EINVAL, f"invalid type id {signed} in func info")
        if not isinstance(_type(btf, t.type), BtfFuncProto):
            raise _fail(v, errno.EINVAL, "")
        prev = off
        out.append((off, tid))
    v.func_info = out


def _returns_small_int(btf: Any, proto: BtfFuncProto) -> bool:
    """``btf_type_is_small_int || btf_is_any_enum`` of the return type (modifiers skipped)."""
    t = _type(btf, btf.skip_modifiers(proto.type)) if proto.type else None
    if isinstance(t, BtfEnum):
        return True
    return isinstance(t, BtfInt) and t.size <= 8


def check_btf_func(v: Verifier) -> None:
    """One record per subprogram, at its first instruction; note each one's linkage."""
    inp = v.inp
    if not inp.func_info_cnt:
        return
    subs = v.cfg.subprogs
    if inp.func_info_cnt != len(subs):
        raise _fail(v, errno.EINVAL, "number of funcs in func_info doesn't match number of subprogs\n")
    btf = prog_btf(v)
    for i, ((off, tid), sp) in enumerate(zip(v.func_info, subs, strict=True)):
        if sp.start != off:
            raise _fail(v, errno.EINVAL, "func_info BTF section doesn't match subprog layout in BPF "
                                         "program\n")
        func = btf[tid]
        sp.linkage = func.linkage
        sp.btf_id = tid
        sp.name = func.name
        proto = btf[func.type]
        scalar_return = _returns_small_int(btf, proto)
        if i and not scalar_return and sp.has_ld_abs:
            raise _fail(v, errno.EINVAL, "LD_ABS is only allowed in functions that return 'int'.\n")
        if i and not scalar_return and sp.has_tail_call:
            raise _fail(v, errno.EINVAL, "tail_call is only allowed in functions that return 'int'.\n")


def check_btf_line(v: Verifier) -> None:
    """Strictly increasing offsets inside the program, on real instructions, with valid
    strings, and a record at the start of every subprogram."""
    inp = v.inp
    nr = inp.line_info_cnt
    if not nr:
        return
    if nr > 0x7FFFFFFF // BPF_LINE_INFO_SIZE:
        raise BtfInfoError(errno.EINVAL)
    rec_size = inp.line_info_rec_size
    if rec_size < MIN_BPF_LINEINFO_SIZE or rec_size > MAX_LINEINFO_REC_SIZE or rec_size & 3:
        raise BtfInfoError(errno.EINVAL)
    btf = prog_btf(v)
    n = len(v.insns)
    subs = v.cfg.subprogs
    s = 0
    prev = 0
    out: list[LineInfo] = []
    for i, rec in enumerate(_records(inp.line_info_raw, nr, rec_size)):
        if any(rec[BPF_LINE_INFO_SIZE:]):
            v.line_info_rec_size_hint = BPF_LINE_INFO_SIZE
            raise _fail(v, errno.E2BIG, "nonzero tailing record in line_info")
        li = LineInfo(_u32(rec, 0), _u32(rec, 4), _u32(rec, 8), _u32(rec, 12))
        if (i and li.insn_off <= prev) or li.insn_off >= n:
            raise _fail(v, errno.EINVAL, f"Invalid line_info[{i}].insn_off:{li.insn_off} (prev_offset:"
                                         f"{prev} prog->len:{n})\n")
        if not v.insns[li.insn_off].code:
            raise _fail(v, errno.EINVAL, f"Invalid insn code at line_info[{i}].insn_off\n")
        if not _valid_string(btf, li.line_off) or not _valid_string(btf, li.file_name_off):
            raise _fail(v, errno.EINVAL, f"Invalid line_info[{i}].line_off or .file_name_off\n")
        if s != len(subs):
            if li.insn_off == subs[s].start:
                s += 1
            elif subs[s].start < li.insn_off:
                raise _fail(v, errno.EINVAL, f"missing bpf_line_info for func#{s}\n")
        prev = li.insn_off
        out.append(li)
    if s != len(subs):
        raise _fail(v, errno.EINVAL, f"missing bpf_line_info for {len(subs) - s} funcs starting "
                                     f"from func#{s}\n")
    v.linfo = out
    v.linfo_offs = [li.insn_off for li in out]


def _valid_string(btf: Any, off: int) -> bool:
    """``btf_name_by_offset`` is non-NULL: the offset lies inside the string section."""
    try:
        return off < len(btf.strings)
    except (AttributeError, TypeError):
        return False


def check_btf_info_early(v: Verifier) -> None:
    if not has_btf_info(v):
        return
    if prog_btf(v) is None:
        raise BtfInfoError(errno.EINVAL)
    check_btf_func_early(v)


def check_btf_info(v: Verifier) -> None:
    if not has_btf_info(v):
        check_abnormal_return(v)
        return
    check_btf_func(v)
    check_btf_line(v)


# -- the log's source lines -------------------------------------------------------------

def find_linfo(v: Verifier, insn_off: int) -> int:
    """Index of the last line record at or before ``insn_off`` (``find_linfo``), or -1."""
    offs = v.linfo_offs
    if not offs:
        return -1
    return bisect.bisect_right(offs, insn_off) - 1


def verbose_linfo(v: Verifier, insn_off: int, prefix: str) -> None:
    """Print the source line of ``insn_off`` once, when it differs from the last one
    printed (two records of one line, at other columns, print once)."""
    if not v.linfo or not v.log.active:
        return
    idx = find_linfo(v, insn_off)
    if idx < 0 or idx == v.prev_linfo:
        return
    li = v.linfo[idx]
    if v.prev_linfo >= 0:
        prev = v.linfo[v.prev_linfo]
        if prev.file_name_off == li.file_name_off and prev.line == li.line:
            return
    btf = prog_btf(v)
    text = btf.string(li.line_off).lstrip(" \t\n\v\f\r")
    fname = btf.string(li.file_name_off).rsplit("/", 1)[-1]
    v.log(f"{prefix}{text} @ {fname}:{li.line}\n")
    v.prev_linfo = idx
