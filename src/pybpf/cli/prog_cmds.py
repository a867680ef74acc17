"""``pybpf prog load|loadall|dump xlated`` in bpftool's grammar and output format.

``load OBJ [PATH]`` loads an object and pins its first program at PATH; ``loadall OBJ
PATH`` pins every program as ``PATH/<name>`` (as ``bpftool prog loadall``); ``dump
xlated (id N | pinned P | name NAME) [linum] [opcodes]`` prints the translated program as
bpftool does: function signatures from BTF, source lines from line info, ``map[id:N]``
operands, helper names and, on request, file/line and the raw instruction bytes.

By default the commands act on pybpf's default :class:`~pybpf.kernel.Kernel`; ``--live``
targets the machine's kernel (root needed). Errors are reported as bpftool does, with
the verifier log where there is one — never a traceback.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import click

from pybpf.btf.raw import Btf, BtfFormatError, BtfFunc, BtfFuncProto, BtfPtr, BtfType
from pybpf.cli.btf_cmds import _group
from pybpf.errors import BpfError
from pybpf.isa.disasm import disasm_kernel
from pybpf.isa.insn import Insn, decode
from pybpf.uapi import BpfCmd, BpfFuncId, bpf_attr_get_id, bpf_attr_info, bpf_attr_obj


def backend(live: bool) -> Any:
    """Where syscalls go: the live kernel or pybpf's default instance."""
    if live:
        from pybpf.loader.load import LiveSyscalls

        return LiveSyscalls()
    from pybpf.kernel import default_kernel

    return default_kernel()


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


# --------------------------------------------------------------------------- load


def _pin(sys_: Any, fd: int, path: str) -> None:
    buf = ctypes.create_string_buffer(path.encode())
    attr = bpf_attr_obj()
    attr.pathname, attr.bpf_fd = ctypes.addressof(buf), fd
    ret = sys_.bpf(BpfCmd.BPF_OBJ_PIN, attr)
    if ret < 0:
        raise _fail(f"failed to pin program at {path}: {os.strerror(-ret)}")


def _load(obj_path: str, live: bool) -> Any:
    import pybpf.skel as skel

    kernel = "live" if live else None
    try:
        return skel.load(obj_path, kernel=kernel)
    except BpfError as exc:
        raise _fail(f"failed to load object file {obj_path}\n{exc}") from None
    except OSError as exc:
        raise _fail(f"failed to open object file {obj_path}: {exc}") from None


@click.command("load", help="Load an object and pin its first program (bpftool prog load).")
@click.argument("obj", type=click.Path(dir_okay=False))
@click.argument("path", required=False)
@click.option("--live", is_flag=True, help="load into the machine's kernel instead of pybpf")
def prog_load(obj: str, path: str | None, live: bool) -> None:
    loaded = _load(obj, live)
    progs = list(loaded.progs)
    if not progs:
        raise _fail(f"object file {obj} doesn't contain any bpf program")
    if path:
        _pin(loaded._syscalls(), progs[0].fd, path)
    else:
        click.echo(f"loaded {progs[0].name} (fd {progs[0].fd}); pass PATH to pin it")
    if path:
        loaded.close()


@click.command("loadall", help="Load an object and pin every program under PATH.")
@click.argument("obj", type=click.Path(dir_okay=False))
@click.argument("path")
@click.option("--live", is_flag=True, help="load into the machine's kernel instead of pybpf")
def prog_loadall(obj: str, path: str, live: bool) -> None:
    loaded = _load(obj, live)
    sys_ = loaded._syscalls()
    if live:
        os.makedirs(path, exist_ok=True)
    for p in loaded.progs:
        if p.autoload:
            _pin(sys_, p.fd, f"{path.rstrip('/')}/{p.name}")
    loaded.close()


# --------------------------------------------------------------------------- dump


class _Info:
    """What ``bpf_prog_info`` tells about a program, with its arrays fetched."""

    def __init__(self, sys_: Any, fd: int) -> None:
        from pybpf.uapi import bpf_prog_info

        info = self._get(sys_, fd, bpf_prog_info())
        n_insn, n_func, n_line = info.xlated_prog_len, info.nr_func_info, info.nr_line_info
        insns = ctypes.create_string_buffer(max(n_insn, 1))
        finfo = ctypes.create_string_buffer(max(8 * n_func, 1))
        linfo = ctypes.create_string_buffer(max(16 * n_line, 1))
        full = bpf_prog_info()
        full.xlated_prog_len, full.xlated_prog_insns = n_insn, ctypes.addressof(insns)
        full.nr_func_info, full.func_info_rec_size = n_func, 8
        full.func_info = ctypes.addressof(finfo)
        full.nr_line_info, full.line_info_rec_size = n_line, 16
        full.line_info = ctypes.addressof(linfo)
        full = self._get(sys_, fd, full)
        self.name = bytes(full.name).split(b"\0")[0].decode(errors="replace")
        self.insns: list[Insn] = decode(insns.raw[:n_insn])
        self.func_info = [tuple(int.from_bytes(finfo.raw[i + j:i + j + 4], "little")
                                for j in (0, 4)) for i in range(0, 8 * n_func, 8)]
        self.line_info = [tuple(int.from_bytes(linfo.raw[i + j:i + j + 4], "little")
                                for j in (0, 4, 8, 12)) for i in range(0, 16 * n_line, 16)]
        self.btf = _fetch_btf(sys_, full.btf_id) if full.btf_id else None

    @staticmethod
    def _get(sys_: Any, fd: int, info: Any) -> Any:
        attr = bpf_attr_info()
        attr.bpf_fd, attr.info_len, attr.info = fd, ctypes.sizeof(info), ctypes.addressof(info)
        ret = sys_.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr)
        if ret < 0:
            raise _fail(f"can't get prog info: {os.strerror(-ret)}")
        return info


def _fetch_btf(sys_: Any, btf_id: int) -> Btf | None:
    from pybpf.uapi import bpf_btf_info

    attr = bpf_attr_get_id()
    attr.btf_id = btf_id
    fd = sys_.bpf(BpfCmd.BPF_BTF_GET_FD_BY_ID, attr)
    if fd < 0:
        return None
    try:
        info = _Info._get(sys_, fd, bpf_btf_info())
        buf = ctypes.create_string_buffer(max(info.btf_size, 1))
        full = bpf_btf_info()
        full.btf, full.btf_size = ctypes.addressof(buf), info.btf_size
        _Info._get(sys_, fd, full)
        return Btf.from_bytes(buf.raw[:info.btf_size])
    except (click.ClickException, BtfFormatError):
        return None
    finally:
        sys_.close(fd)


def _prog_fd(sys_: Any, how: str, what: str) -> int:
    if how == "id":
        attr = bpf_attr_get_id()
        try:
            attr.prog_id = int(what, 0)
        except ValueError:
            raise click.UsageError(f"can't parse {what} as ID") from None
        fd = sys_.bpf(BpfCmd.BPF_PROG_GET_FD_BY_ID, attr)
        if fd < 0:
            raise _fail(f"get by id ({what}): {os.strerror(-fd)}")
        return int(fd)
    if how == "pinned":
        buf = ctypes.create_string_buffer(what.encode())
        attr2 = bpf_attr_obj()
        attr2.pathname = ctypes.addressof(buf)
        fd = sys_.bpf(BpfCmd.BPF_OBJ_GET, attr2)
        if fd < 0:
            raise _fail(f"bpf obj get ({what}): {os.strerror(-fd)}")
        return int(fd)
    if how == "name":
        nxt = 0
        while True:
            attr = bpf_attr_get_id()
            attr.start_id = nxt
            if sys_.bpf(BpfCmd.BPF_PROG_GET_NEXT_ID, attr) < 0:
                break
            nxt = attr.next_id
            attr.prog_id = nxt
            fd = sys_.bpf(BpfCmd.BPF_PROG_GET_FD_BY_ID, attr)
            if fd < 0:
                continue
            from pybpf.uapi import bpf_prog_info

            info = _Info._get(sys_, fd, bpf_prog_info())
            if bytes(info.name).split(b"\0")[0].decode(errors="replace") == what:
                return int(fd)
            sys_.close(fd)
        raise _fail(f"no program named {what}")
    raise click.UsageError(f"expected 'id', 'pinned' or 'name', got '{how}'")


def _c_type(btf: Btf, tid: int) -> str:
    """The C spelling bpftool's ``btf_dumper_type_only`` gives (``struct xdp_md *``)."""
    t: BtfType = btf.types[tid]
    if tid == 0:
        return "void"
    if isinstance(t, BtfPtr):
        return f"{_c_type(btf, t.type)} *"
    prefix = {"STRUCT": "struct ", "UNION": "union ", "ENUM": "enum ", "ENUM64": "enum ",
              "CONST": "const ", "VOLATILE": "volatile ", "RESTRICT": "restrict "}
    kind = t.kind.name
    if kind in ("CONST", "VOLATILE", "RESTRICT"):
        return prefix[kind] + _c_type(btf, t.type)  # type: ignore[attr-defined]
    return prefix.get(kind, "") + (t.name or "(anon)")


def _signature(btf: Btf, type_id: int) -> str | None:
    func = btf.types[type_id] if type_id < len(btf.types) else None
    if not isinstance(func, BtfFunc):
        return None
    proto = btf.types[func.type]
    if not isinstance(proto, BtfFuncProto):
        return None
    args = ", ".join("..." if p.type == 0 else f"{_c_type(btf, p.type)} {p.name}"
                     for p in proto.params)
    return f"{_c_type(btf, proto.type)} {func.name}({args})"


def _helper_name(func_id: int) -> str | None:
    try:
        return BpfFuncId(func_id).name.removeprefix("BPF_FUNC_").join(("bpf_", ""))
    except ValueError:
        return None


def _kallsyms() -> dict[int, str]:
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


def _live_helper_name() -> Any:
    """bpftool's view of a fixed-up call: ``__bpf_call_base + imm`` looked up in kallsyms."""
    syms = _kallsyms()
    base = next((a for a, n in syms.items() if n == "__bpf_call_base"), None)

    def name(imm: int) -> str | None:
        if base is not None and base:
            rel = imm - (1 << 32) if imm & 0x80000000 else imm
            sym = syms.get(base + rel)
            if sym is not None:
                return sym
        return _helper_name(imm)

    return name


def _pseudo_imm64(first: Insn, second: Insn, value: int) -> str | None:
    if first.src == 1:  # BPF_PSEUDO_MAP_FD: the kernel reports the map id in xlated code
        return f"map[id:{first.imm & 0xFFFFFFFF}]"
    if first.src == 2:  # BPF_PSEUDO_MAP_VALUE
        return f"map[id:{first.imm & 0xFFFFFFFF}][0]+{second.imm & 0xFFFFFFFF}"
    return None


def dump_xlated(info: _Info, linum: bool, opcodes: bool, live: bool = False) -> list[str]:
    """The lines bpftool prints for ``prog dump xlated``."""
    helper = _live_helper_name() if live else _helper_name
    lines = disasm_kernel(info.insns, helper_name=helper, pseudo_imm64=_pseudo_imm64)
    funcs = {off: tid for off, tid in info.func_info}
    linfo = {rec[0]: rec for rec in info.line_info}
    out: list[str] = []
    slot = 0
    for text in lines:
        if info.btf is not None and slot in funcs:
            sig = _signature(info.btf, funcs[slot])
            if sig:
                out.append(f"{sig}:")
        if info.btf is not None and slot in linfo:
            _, file_off, line_off, line_col = linfo[slot]
            try:
                src = info.btf.string(line_off).lstrip()
                where = (f" [file:{info.btf.string(file_off)} line_num:{line_col >> 10} "
                         f"line_col:{line_col & 0x3FF}]") if linum else ""
                out.append(f"; {src}{where}")
            except BtfFormatError:
                pass
        out.append(f"{slot:4d}: {text}")
        wide = info.insns[slot].code == 0x18
        if opcodes:
            raw = b"".join(_insn_bytes(info.insns[s]) for s in range(slot, slot + 1 + wide))
            out.append("       " + " ".join(f"{b:02x}" for b in raw))
        slot += 2 if wide else 1
    return out


def _insn_bytes(i: Insn) -> bytes:
    from pybpf.isa.insn import encode

    return encode([i])


@click.group("dump", help="Dump a loaded program (bpftool prog dump).")
def prog_dump() -> None:
    pass


@prog_dump.command("xlated", help="dump xlated (id N | pinned P | name NAME) [linum] [opcodes]")
@click.argument("how")
@click.argument("what")
@click.argument("flags", nargs=-1)
@click.option("--live", is_flag=True, help="read from the machine's kernel instead of pybpf")
def prog_dump_xlated(how: str, what: str, flags: tuple[str, ...], live: bool) -> None:
    bad = [f for f in flags if f not in ("linum", "opcodes", "visual", "file")]
    if bad:
        raise click.UsageError(f"unknown keyword {bad[0]!r}")
    sys_ = backend(live)
    fd = _prog_fd(sys_, how, what)
    try:
        info = _Info(sys_, fd)
    finally:
        sys_.close(fd)
    if not info.insns:
        raise _fail("no instructions returned")
    sys.stdout.write("".join(line + "\n" for line in dump_xlated(
        info, "linum" in flags, "opcodes" in flags, live)))


PROG_SUBCOMMANDS: list[click.Command] = [prog_load, prog_loadall, prog_dump]

COMMANDS: list[click.Command] = _group("prog", "Load and inspect BPF programs (bpftool prog).",
                                       PROG_SUBCOMMANDS)

__all__ = ["COMMANDS", "PROG_SUBCOMMANDS", "dump_xlated"]

