"""The shared verifier corpus (``../shared/verifier/tv61.json``) as test cases for pybpf.

Each case is a ``BPF_PROG_LOAD`` recipe labelled by a live 6.18 kernel. :func:`prepare`
creates the fixup maps with the given geometry (pybpf map types through
``find_map_ops(type).map_alloc``; a geometry-only stand-in when the type does not exist
yet, counted separately), patches their fds into the ``ld_imm64`` instructions, and
builds the :class:`~pybpf.verifier.api.VerifierInput`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybpf.isa.insn import Insn, decode
from pybpf.verifier.api import VerifierInput, VerifierResult, bpf_check

DEFAULT_PATH = Path(__file__).resolve().parents[3] / ".." / "shared" / "verifier" / "tv61.json"


def load(path: Path | str | None = None) -> list[dict[str, Any]]:
    p = Path(path) if path else DEFAULT_PATH
    with open(p) as f:
        return json.load(f)


class StubMap:
    """Geometry-only map for cases whose map type pybpf does not implement yet."""

    def __init__(self, spec: dict[str, Any], name: str) -> None:
        from pybpf.runtime.memory import REGISTRY

        self.map_type = spec["type"]
        self.key_size = spec["key_size"]
        self.value_size = spec["value_size"]
        self.max_entries = spec["max_entries"]
        self.map_flags = spec.get("flags", 0)
        self.name = name.encode() if spec.get("btf") else b""
        self.frozen = False
        self.stub = True
        self.header = REGISTRY.alloc(128, f"stub map {name}", writable=False, owner=self)
        self.inner_map_meta: Any = None

    @property
    def addr(self) -> int:
        return self.header.start


# BTF records of the corpus' BTF-carrying maps (test_verifier's built-in BTF):
# struct val { int cnt; struct bpf_spin_lock l; }, struct timer { struct bpf_timer t; },
# struct btf_ptr { kptr_untrusted at 0, kptr at 8, kptr at 16 }.
_RECORDS: dict[str, list[tuple[str, int, int]]] = {
    "map_spin_lock": [("spin_lock", 4, 4)],
    "map_timer": [("timer", 0, 16)],
    "map_kptr": [("kptr_untrusted", 0, 8), ("kptr", 8, 8), ("kptr", 16, 8)],
    "sk_storage_map": [("spin_lock", 4, 4)],
}


def _attach_btf_id(case: dict[str, Any]) -> int:
    """The id test_verifier gives ``attach_btf_name`` in vmlinux (as libbpf's
    ``libbpf_find_vmlinux_btf_id``: ``bpf_iter_``/``btf_trace_``/``bpf_lsm_`` prefixes)."""
    name = case.get("attach_btf_name")
    if not name:
        return 0
    from pybpf.verifier.attach_target import vmlinux_btf_id

    return vmlinux_btf_id(name, case.get("expected_attach_type") or 0)


#: test_verifier's ``struct btf_ptr`` points to these kernel structs
_KPTR_TYPES = {0: "prog_test_ref_kfunc", 8: "prog_test_ref_kfunc", 16: "prog_test_member"}


@dataclass
class Prepared:
    inp: VerifierInput
    maps: dict[int, Any] = field(default_factory=dict)
    stub_kinds: list[str] = field(default_factory=list)
    skip: str = ""


def _make_map(kind: str, spec: dict[str, Any]) -> tuple[Any, bool]:
    """A pybpf map of the given geometry, or a stub. Returns (map, is_stub)."""
    try:
        from pybpf.maps.core import MapAttr
        from pybpf.maps.ops import find_map_ops
    except ImportError:  # pragma: no cover
        return StubMap(spec, kind), True
    inner = None
    if spec.get("inner_map"):
        inner, _ = _make_map(kind + "_inner", spec["inner_map"])
    ops = find_map_ops(spec["type"])
    m: Any
    if ops is None or spec.get("btf"):
        m = StubMap(spec, kind)
        m.inner_map_meta = inner
        stub = True
    else:
        try:
            m = ops.map_alloc(MapAttr(spec["type"], spec["key_size"], spec["value_size"],
                                      spec["max_entries"], spec.get("flags", 0), inner_map=inner))
            stub = False
        except Exception:
            m = StubMap(spec, kind)
            m.inner_map_meta = inner
            stub = True
    if kind in _RECORDS:
        with contextlib.suppress(AttributeError):
            m.btf_record = _RECORDS[kind]
            if kind == "map_kptr":  # the pointees, structs of the kernel's BTF
                m.kptr_types = _KPTR_TYPES
        if kind in ("map_spin_lock", "map_timer", "map_kptr"):
            m.name = b"test_map"
    _init_map(m, spec)
    return m, stub


def _init_map(m: Any, spec: dict[str, Any]) -> None:
    init = spec.get("init")
    if not init or getattr(m, "stub", False):
        return
    try:
        for ent in init:
            key = bytes.fromhex(ent["key"]) if isinstance(ent, dict) else None
            val = bytes.fromhex(ent["value"]) if isinstance(ent, dict) else None
            if key is not None and val is not None:
                m.ops.sys_update(m, key, val, 0)
    except Exception:
        pass


def prepare(case: dict[str, Any]) -> Prepared:
    insns = decode(bytes.fromhex(case["insns"]))
    maps: dict[str, Any] = {}
    by_fd: dict[int, Any] = {}
    stubs: list[str] = []
    next_fd = 100
    for fx in case["fixups"]:
        kind = fx["kind"]
        if kind == "kfunc_btf_id":
            continue
        if kind not in maps:
            m, stub = _make_map(kind, fx["map"])
            maps[kind] = (next_fd, m)
            by_fd[next_fd] = m
            if stub:
                stubs.append(kind)
            next_fd += 1
        fd = maps[kind][0]
        i = fx["insn_index"]
        insns[i] = insns[i]._replace(imm=fd)
    flags = case["prog_flags"]
    inp = VerifierInput(insns=insns, prog_type=case["prog_type"],
                        expected_attach_type=case.get("expected_attach_type") or 0,
                        prog_flags=flags, log_level=0, map_by_fd=lambda fd: labeller_map_by_fd(by_fd, fd),
                        attach_btf_id=_attach_btf_id(case), **_btf_info(case))
    prep = Prepared(inp, by_fd, stubs)
    if any(fx["kind"] == "kfunc_btf_id" for fx in case["fixups"]):
        prep.skip = "kfunc"
    return prep


@dataclass
class Outcome:
    index: int
    descr: str
    labelled: bool
    kernel_accepted: bool | None
    accepted: bool
    verdict_ok: bool
    message_ok: bool | None  # None: kernel accepted
    our_error: str
    kernel_error: str
    stub_maps: bool
    result: VerifierResult | None = None
    retval_ok: bool | None = None
    retval: int | None = None
    errno_ok: bool | None = None  # None: kernel accepted
    our_errno: int = 0
    kernel_errno: int = 0


def _btf_info(case: dict[str, Any]) -> dict[str, Any]:
    """A case's own BTF and ``func_info`` records (the labeller loaded them too)."""
    if not case.get("prog_btf") or not case.get("func_info"):
        return {}
    from pybpf.btf.raw import Btf

    return {"prog_btf": Btf.from_bytes(bytes.fromhex(case["prog_btf"])),
            "func_info": [tuple(r) for r in case["func_info"]]}


def labeller_map_by_fd(by_fd: dict[int, Any], fd: int) -> Any:
    """The labeller's fd table: its maps, and stdin/stdout/stderr open but no maps (EINVAL)."""
    if fd in by_fd:
        return by_fd[fd]
    return errno.EINVAL if fd in (0, 1, 2) else None


def run_case(case: dict[str, Any]) -> Outcome:
    prep = prepare(case)
    res = bpf_check(prep.inp)
    k = case["kernel"]
    accepted = res.errno == 0
    our_err = res.extra.get("error_line", "")
    if k is None:
        return Outcome(case["index"], case["descr"], False, None, accepted, False, None, our_err, "",
                       bool(prep.stub_kinds), res)
    kacc = bool(k["accepted"])
    verdict_ok = kacc == accepted
    msg_ok: bool | None = None
    kerr = k.get("error_line") or ""
    errno_ok: bool | None = None
    kerrno = abs(int(k.get("errno") or 0))
    if not kacc:
        msg_ok = (not accepted) and _same_message(our_err, kerr)
        # a truncated log turns the labeller's errno into ENOSPC (its buffer, not the verdict)
        errno_ok = res.errno == kerrno or (bool(k.get("log_truncated")) and kerrno == errno.ENOSPC)
    return Outcome(case["index"], case["descr"], True, kacc, accepted, verdict_ok, msg_ok, our_err, kerr,
                   bool(prep.stub_kinds), res, errno_ok=errno_ok, our_errno=res.errno,
                   kernel_errno=kerrno)


def _same_message(ours: str, kernel: str) -> bool:
    if ours == kernel:
        return True
    # kernel addresses in messages vary run to run
    import re
    norm = re.compile(r"0xffff[0-9a-f]{12}")
    return norm.sub("ADDR", ours) == norm.sub("ADDR", kernel)


def pack(insns: list[Insn]) -> bytes:
    return b"".join(struct.pack("<BBhi", i.code, (i.dst & 15) | ((i.src & 15) << 4), i.off, i.imm)
                    for i in insns)


def run_retval(case: dict[str, Any]) -> tuple[bool, str] | None:
    """Load an accepted map-free case through pybpf's ``bpf()`` and test-run it like the labeller
    (64-byte ``data_in``, ``data_size_out`` 256, ``repeat`` 1). Returns (agrees, detail), or
    ``None`` when the case is not comparable (no kernel run, pointer-valued retval, maps)."""
    k = case["kernel"]
    if not k or not k["accepted"] or not k.get("test_runs") or k.get("retval_nondeterministic"):
        return None
    if case["fixups"]:
        return None
    from pybpf.errors import BpfError
    from pybpf.program import Program

    runs = (case["expected_6_1"] or {}).get("runs") or []
    data = bytes.fromhex(runs[0]["data"]) if runs and runs[0].get("data") else bytes(64)
    kr = k["test_runs"][0]
    try:
        prog = Program.load(None, case["prog_type"], decode(bytes.fromhex(case["insns"])),
                            prog_flags=case["prog_flags"],
                            expected_attach_type=case.get("expected_attach_type") or 0)
    except BpfError as e:
        return False, f"load failed errno {e.errno}"
    try:
        try:
            res = prog.test_run(data, data_size_out=256)
        except BpfError as e:
            return (not kr["ok"] and kr["errno"] == e.errno), f"errno {e.errno} vs {kr}"
        if not kr["ok"]:
            return False, f"ran (retval {res.retval}) but kernel errno {kr['errno']}"
        ours = res.retval & 0xFFFFFFFF
        return ours == (kr["retval"] & 0xFFFFFFFF), f"retval {ours} vs {kr['retval']}"
    finally:
        close = getattr(prog, "close", None)
        if close is not None:
            close()
