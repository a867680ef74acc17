"""``bpf_prog_info`` of one program with its arrays, and bpftool's dumps of it.

Everything is read through ``BPF_OBJ_GET_INFO_BY_FD`` — as bpftool does — so the same
code dumps a pybpf program and (``--live``) a program of the machine's kernel.

* :func:`xlated_records` / :func:`xlated_plain`: ``bpftool prog dump xlated``.
* :func:`jited_records` / :func:`jited_plain`: ``bpftool prog dump jited`` (bpftool built
  with a disassembler: ``<proto>:``, ``bpf_prog_<tag>_<func>:``, ``; source`` and
  ``%4x:\\t<insn>`` lines), source lines placed as libbpf's
  ``bpf_prog_linfo__lfind_addr_func`` places them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from pybpf.btf.raw import Btf, BtfFormatError, BtfFunc, BtfFuncProto, BtfPtr, BtfType
from pybpf.cli._target import get_info
from pybpf.isa.disasm import bpftool_imm64, disasm_kernel
from pybpf.isa.insn import Insn, decode, encode
from pybpf.uapi import BpfCmd, BpfFuncId, bpf_attr_get_id

Record = dict[str, Any]


def _u32s(raw: bytes, n: int, rec: int, fields: int) -> list[tuple[int, ...]]:
    return [tuple(int.from_bytes(raw[i + 4 * j:i + 4 * j + 4], "little") for j in range(fields))
            for i in range(0, rec * n, rec)]


class ProgInfo:
    """What ``bpf_prog_info`` tells about a program, with its arrays fetched."""

    def __init__(self, sys_: Any, fd: int) -> None:
        from pybpf.uapi import bpf_prog_info

        info = get_info(sys_, fd, bpf_prog_info())
        n_insn, n_jit = info.xlated_prog_len, info.jited_prog_len
        n_func, n_line, n_jline = info.nr_func_info, info.nr_line_info, info.nr_jited_line_info
        n_ksyms, n_lens = info.nr_jited_ksyms, info.nr_jited_func_lens
        bufs = {k: ctypes.create_string_buffer(max(n, 1)) for k, n in (
            ("insns", n_insn), ("jit", n_jit), ("finfo", 8 * n_func), ("linfo", 16 * n_line),
            ("jlinfo", 8 * n_jline), ("ksyms", 8 * n_ksyms), ("lens", 4 * n_lens))}
        full = bpf_prog_info()
        full.xlated_prog_len, full.xlated_prog_insns = n_insn, ctypes.addressof(bufs["insns"])
        full.jited_prog_len, full.jited_prog_insns = n_jit, ctypes.addressof(bufs["jit"])
        full.nr_func_info, full.func_info_rec_size = n_func, 8
        full.func_info = ctypes.addressof(bufs["finfo"])
        full.nr_line_info, full.line_info_rec_size = n_line, 16
        full.line_info = ctypes.addressof(bufs["linfo"])
        full.nr_jited_line_info, full.jited_line_info_rec_size = n_jline, 8
        full.jited_line_info = ctypes.addressof(bufs["jlinfo"])
        full.nr_jited_ksyms, full.jited_ksyms = n_ksyms, ctypes.addressof(bufs["ksyms"])
        full.nr_jited_func_lens, full.jited_func_lens = n_lens, ctypes.addressof(bufs["lens"])
        full = get_info(sys_, fd, full)
        self.name = bytes(full.name).split(b"\0")[0].decode(errors="replace")
        self.tag = bytes(full.tag).hex()
        self.insns: list[Insn] = decode(bufs["insns"].raw[:n_insn])
        self.jited: bytes = bufs["jit"].raw[:n_jit]
        self.func_info = _u32s(bufs["finfo"].raw, n_func, 8, 2)
        self.line_info = _u32s(bufs["linfo"].raw, n_line, 16, 4)
        self.jited_line_info = [int.from_bytes(bufs["jlinfo"].raw[i:i + 8], "little")
                                for i in range(0, 8 * n_jline, 8)]
        self.jited_ksyms = [int.from_bytes(bufs["ksyms"].raw[i:i + 8], "little")
                            for i in range(0, 8 * n_ksyms, 8)]
        self.jited_func_lens = [v[0] for v in _u32s(bufs["lens"].raw, n_lens, 4, 1)]
        self.btf = fetch_btf(sys_, full.btf_id) if full.btf_id else None

    # ---- BTF helpers

    def source(self, rec: tuple[int, ...]) -> tuple[str, str, int, int] | None:
        """(source line, file, line number, column) of a line-info record."""
        if self.btf is None:
            return None
        _, file_off, line_off, line_col = rec
        try:
            return (self.btf.string(line_off).lstrip(), self.btf.string(file_off),
                    line_col >> 10, line_col & 0x3FF)
        except BtfFormatError:
            return None

    def proto(self, type_id: int) -> str | None:
        return signature(self.btf, type_id) if self.btf is not None else None

    def func_name(self, idx: int) -> str | None:
        if self.btf is None or idx >= len(self.func_info):
            return None
        t = self.btf.types[self.func_info[idx][1]] if self.func_info[idx][1] < len(
            self.btf.types) else None
        return t.name if isinstance(t, BtfFunc) else None


def fetch_btf(sys_: Any, btf_id: int) -> Btf | None:
    import click

    from pybpf.uapi import bpf_btf_info

    attr = bpf_attr_get_id()
    attr.btf_id = btf_id
    fd = sys_.bpf(BpfCmd.BPF_BTF_GET_FD_BY_ID, attr)
    if fd < 0:
        return None
    try:
        info = get_info(sys_, fd, bpf_btf_info(), "btf")
        buf = ctypes.create_string_buffer(max(info.btf_size, 1))
        full = bpf_btf_info()
        full.btf, full.btf_size = ctypes.addressof(buf), info.btf_size
        get_info(sys_, fd, full, "btf")
        return Btf.from_bytes(buf.raw[:info.btf_size])
    except (click.ClickException, BtfFormatError):
        return None
    finally:
        sys_.close(fd)


def c_type(btf: Btf, tid: int) -> str:
    """The C spelling bpftool's ``btf_dumper_type_only`` gives (``struct xdp_md *``)."""
    if tid == 0:
        return "void"
    t: BtfType = btf.types[tid]
    if isinstance(t, BtfPtr):
        return f"{c_type(btf, t.type)} *"
    prefix = {"STRUCT": "struct ", "UNION": "union ", "ENUM": "enum ", "ENUM64": "enum ",
              "CONST": "const ", "VOLATILE": "volatile ", "RESTRICT": "restrict "}
    kind = t.kind.name
    if kind in ("CONST", "VOLATILE", "RESTRICT"):
        return prefix[kind] + c_type(btf, t.type)  # type: ignore[attr-defined]
    return prefix.get(kind, "") + (t.name or "(anon)")


def signature(btf: Btf, type_id: int) -> str | None:
    func = btf.types[type_id] if type_id < len(btf.types) else None
    if not isinstance(func, BtfFunc):
        return None
    proto = btf.types[func.type]
    if not isinstance(proto, BtfFuncProto):
        return None
    args = ", ".join("..." if p.type == 0 else f"{c_type(btf, p.type)} {p.name}"
                     for p in proto.params)
    return f"{c_type(btf, proto.type)} {func.name}({args})"


# --------------------------------------------------------------------------- xlated


def helper_name(func_id: int) -> str | None:
    try:
        return "bpf_" + BpfFuncId(func_id).name.removeprefix("BPF_FUNC_")
    except ValueError:
        return None


def kallsyms() -> dict[int, str]:
    """``/proc/kallsyms`` by address (empty where unreadable or addresses are hidden)."""
    out: dict[int, str] = {}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    out.setdefault(int(parts[0], 16), parts[2])
    except (OSError, ValueError):
        return {}
    return out


def live_helper_name() -> Callable[[int], str | None]:
    """bpftool's view of a fixed-up call: ``__bpf_call_base + imm`` looked up in kallsyms."""
    syms = kallsyms()
    base = next((a for a, n in syms.items() if n == "__bpf_call_base"), None)

    def name(imm: int) -> str | None:
        if base:
            rel = imm - (1 << 32) if imm & 0x80000000 else imm
            sym = syms.get(base + rel)
            if sym is not None:
                return sym
        return helper_name(imm)

    return name


def _hex(b: bytes) -> list[str]:
    return [f"0x{x:02x}" for x in b]


def _opcodes(raw: bytes) -> Record:
    """bpftool's JSON ``opcodes`` object (``imm`` takes the 2nd slot of an ld_imm64)."""
    return {"code": f"0x{raw[0]:x}", "src_reg": f"0x{raw[1] >> 4:x}",
            "dst_reg": f"0x{raw[1] & 0xF:x}", "off": _hex(raw[2:4]),
            "imm": _hex(raw[4:8] + raw[8:16])}


def xlated_records(info: ProgInfo, linum: bool, live: bool = False) -> list[Record]:
    """One record per instruction: slot, proto, src/file/line, disasm, raw bytes."""
    helper = live_helper_name() if live else helper_name
    lines = disasm_kernel(info.insns, helper_name=helper, pseudo_imm64=bpftool_imm64)
    funcs = {off: tid for off, tid in info.func_info}
    linfo = {rec[0]: rec for rec in info.line_info}
    out: list[Record] = []
    slot = 0
    for text in lines:
        rec: Record = {"slot": slot}
        if slot in funcs:
            sig = info.proto(funcs[slot])
            if sig:
                rec["proto"] = sig
        if slot in linfo:
            src = info.source(linfo[slot])
            if src is not None:
                rec["src"] = src[0]
                if linum:
                    rec["file"], rec["line_num"], rec["line_col"] = src[1:]
        rec["disasm"] = text
        wide = info.insns[slot].code == 0x18
        rec["raw"] = encode(info.insns[slot:slot + 1 + wide])
        out.append(rec)
        slot += 2 if wide else 1
    return out


def _linum_suffix(rec: Record) -> str:
    if "file" not in rec:
        return ""
    return f" [file:{rec['file']} line_num:{rec['line_num']} line_col:{rec['line_col']}]"


def xlated_plain(records: list[Record], opcodes: bool) -> list[str]:
    out: list[str] = []
    for rec in records:
        if "proto" in rec:
            out.append(f"{rec['proto']}:")
        if "src" in rec:
            out.append(f"; {rec['src']}{_linum_suffix(rec)}")
        out.append(f"{rec['slot']:4d}: {rec['disasm']}")
        if opcodes:
            out.append("       " + " ".join(f"{b:02x}" for b in rec["raw"]))
    return out


def xlated_json(records: list[Record], opcodes: bool) -> list[Record]:
    out: list[Record] = []
    for rec in records:
        j: Record = {k: rec[k] for k in ("proto", "src", "file", "line_num", "line_col", "disasm")
             if k in rec}
        if opcodes:
            j["opcodes"] = _opcodes(rec["raw"])
        out.append(j)
    return out


# --------------------------------------------------------------------------- jited


def _ksym_name(info: ProgInfo, idx: int, syms: dict[int, str]) -> str:
    """The kallsyms name of function ``idx``: the kernel's, else ``bpf_prog_<tag>_<fn>``."""
    addr = info.jited_ksyms[idx] if idx < len(info.jited_ksyms) else 0
    if addr in syms:
        return syms[addr]
    fn = info.func_name(idx) or (info.name if idx == 0 else "F")
    return f"bpf_prog_{info.tag}_{fn}"


def _lfind_addr_func(addrs: list[int], linfo: list[tuple[int, ...]], first: int, count: int,
                     addr: int, nr_skip: int) -> tuple[int, ...] | None:
    """libbpf's ``bpf_prog_linfo__lfind_addr_func`` over one function's line infos."""
    if nr_skip >= count:
        return None
    start = first + nr_skip
    if addr < addrs[start]:
        return None
    i = start
    while i < first + count and addr >= addrs[i]:
        i += 1
    return linfo[i - 1]


def _func_linfo(info: ProgInfo) -> tuple[list[int], list[tuple[int, int]]]:
    """Line-info native addresses, and (first index, count) of each JITed function.

    Records belong to the function whose first instruction precedes them (as the kernel
    splits them). LLVM reorders code, so an address may precede the previous one; they
    are clamped into the function and made non-decreasing, which is what the kernel's
    JIT guarantees and libbpf's lookup assumes.
    """
    nfunc = len(info.jited_func_lens)
    if (info.btf is None or not info.jited_line_info or nfunc != len(info.jited_ksyms)
            or len(info.jited_line_info) != len(info.line_info)):
        return [], [(0, 0)] * nfunc
    starts = [off for off, _ in info.func_info] if len(info.func_info) == nfunc else [0]
    ranges: list[tuple[int, int]] = []
    addrs = list(info.jited_line_info)
    for f in range(nfunc):
        lo = starts[f] if f < len(starts) else 1 << 32
        hi = starts[f + 1] if f + 1 < len(starts) else 1 << 32
        idx = [i for i, rec in enumerate(info.line_info) if lo <= rec[0] < hi]
        ksym, size = info.jited_ksyms[f], info.jited_func_lens[f]
        last = ksym
        for n, i in enumerate(idx):
            a = min(max(addrs[i], ksym), ksym + max(size - 1, 0))
            last = a = ksym if n == 0 else max(a, last)
            addrs[i] = a
        ranges.append((idx[0], len(idx)) if idx else (0, 0))
    return addrs, ranges


def jited_records(info: ProgInfo, linum: bool, live: bool = False) -> list[Record]:
    """One record per JITed function: proto, name and its instructions."""
    from pybpf.jit.disasm import disassemble_bytes

    syms = kallsyms() if live else {}
    lens = info.jited_func_lens or [len(info.jited)]
    addrs, ranges = _func_linfo(info)
    funcs: list[Record] = []
    pos = 0
    for idx, size in enumerate(lens):
        image = info.jited[pos:pos + size]
        pos += size
        fn: Record = {"name": _ksym_name(info, idx, syms), "insns": []}
        if idx < len(info.func_info):
            sig = info.proto(info.func_info[idx][1])
            if sig:
                fn["proto"] = sig
        rows = disassemble_bytes(image)
        first, count = ranges[idx] if idx < len(ranges) else (0, 0)
        ksym = info.jited_ksyms[idx] if idx < len(info.jited_ksyms) else 0
        nr_skip = 0
        for n, (pc, text) in enumerate(rows):
            end = rows[n + 1][0] if n + 1 < len(rows) else len(image)
            insn: Record = {"pc": pc, "text": text, "raw": image[pc:end]}
            rec = (_lfind_addr_func(addrs, info.line_info, first, count, ksym + pc, nr_skip)
                   if count else None)
            if rec is not None:
                nr_skip += 1
                src = info.source(rec)
                if src is not None:
                    insn["src"] = src[0]
                    if linum:
                        insn["file"], insn["line_num"], insn["line_col"] = src[1:]
            fn["insns"].append(insn)
        funcs.append(fn)
    return funcs


def jited_plain(funcs: list[Record], opcodes: bool) -> list[str]:
    out: list[str] = []
    for fn in funcs:
        if "proto" in fn:
            out.append(f"{fn['proto']}:")
        out.append(f"{fn['name']}:")
        for insn in fn["insns"]:
            if "src" in insn:
                out.append(f"; {insn['src']}{_linum_suffix(insn)}")
            line = f"{insn['pc']:4x}:\t{insn['text']}"
            if opcodes:
                line += "\n\t" + "".join(f"{b:02x} " for b in insn["raw"])
            out.append(line)
        out.append("")
    return out


def jited_json(funcs: list[Record], opcodes: bool) -> list[Record]:
    out: list[Record] = []
    for fn in funcs:
        j: Record = {}
        if "proto" in fn:
            j["proto"] = fn["proto"]
        j["name"] = fn["name"]
        insns = []
        for insn in fn["insns"]:
            rec = {k: insn[k] for k in ("src", "file", "line_num", "line_col") if k in insn}
            rec["pc"] = f"0x{insn['pc']:x}"
            op, _, rest = insn["text"].partition(" ")
            rec["operation"] = op
            rec["operands"] = [o.strip() for o in rest.split(",")] if rest else None
            if opcodes:
                rec["opcodes"] = _hex(insn["raw"])
            insns.append(rec)
        j["insns"] = insns
        out.append(j)
    return out


__all__ = ["ProgInfo", "c_type", "fetch_btf", "jited_json", "jited_plain", "jited_records",
           "signature", "xlated_json", "xlated_plain", "xlated_records"]
