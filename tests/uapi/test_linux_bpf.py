"""The generated uAPI module against the running kernel's BTF, read at test time.

Every ctypes class must have the kernel's size and every field its offset (bitfields: bit
offset and width); every enum value must be the kernel's; every command must have a view.
"""

from __future__ import annotations

import ctypes
import enum
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pybpf import uapi
from pybpf.btf import Btf, BtfArray, BtfComposite, BtfEnum, BtfKind, BtfPtr, BtfUnion
from pybpf.uapi import linux_bpf

VMLINUX = Path("/sys/kernel/btf/vmlinux")
ROOT = Path(__file__).resolve().parents[2]

CData = type[ctypes.Structure] | type[ctypes.Union]


@pytest.fixture(scope="module")
def btf() -> Btf:
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} not present: cannot compare layouts with the kernel")
    return Btf.from_file(VMLINUX)


# --------------------------------------------------------------------------- BTF truth


def truth(btf: Btf, t: BtfComposite) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Byte offsets and (bit offset, width) of bitfields, anonymous members flattened."""
    offsets: dict[str, int] = {}
    bits: dict[str, tuple[int, int]] = {}

    def walk(c: BtfComposite, base: int) -> None:
        for m in c.members:
            at = base + m.bit_offset
            if not m.name:
                sub = btf.resolve(m.type)
                assert isinstance(sub, BtfComposite)
                walk(sub, at)
                continue
            offsets[m.name] = at // 8
            if m.bitfield_size:
                bits[m.name] = (at, m.bitfield_size)

    walk(t, 0)
    return offsets, bits


def is_md_ptr(btf: Btf, type_id: int) -> bool:
    t = btf.resolve(type_id)
    return (isinstance(t, BtfUnion) and not t.name and t.size == 8 and len(t.members) == 1
            and isinstance(btf.resolve(t.members[0].type), BtfPtr))


def pair_classes(btf: Btf) -> dict[CData, BtfComposite]:
    """Every generated class reachable from a named struct, paired with its BTF type."""
    pairs: dict[CData, BtfComposite] = {}

    def visit(cls: CData, t: BtfComposite) -> None:
        if cls in pairs:
            assert pairs[cls].id == t.id or _same_shape(btf, pairs[cls], t), cls
            return
        pairs[cls] = t
        fields: dict[str, Any] = {f[0]: f[1] for f in cls._fields_}
        anonymous = iter(getattr(cls, "_anonymous_", ()))
        for m in t.members:
            sub = btf.resolve(m.type)
            if not m.name:
                if is_md_ptr(btf, m.type):
                    assert isinstance(sub, BtfComposite)
                    assert fields[sub.members[0].name] is ctypes.c_uint64
                    continue
                assert isinstance(sub, BtfComposite)
                visit(fields[next(anonymous)], sub)
                continue
            ctype: Any = fields[m.name]
            while isinstance(sub, BtfArray):
                ctype = ctype._type_
                sub = btf.resolve(sub.type)
            if isinstance(sub, BtfComposite):
                visit(ctype, sub)

    for key, cls in linux_bpf.STRUCTS.items():
        if "(anonymous)" in (cls.__doc__ or ""):
            continue  # reached from its named parent
        ids = [i for i in btf.find_all(key) if isinstance(btf[i], BtfComposite)]
        assert ids, f"{key} is not in the kernel's BTF"
        t = btf[ids[0]]
        assert isinstance(t, BtfComposite)
        visit(cls, t)
    return pairs


def _same_shape(btf: Btf, a: BtfComposite, b: BtfComposite) -> bool:
    return a.size == b.size and truth(btf, a) == truth(btf, b)


@pytest.fixture(scope="module")
def pairs(btf: Btf) -> dict[CData, BtfComposite]:
    return pair_classes(btf)


# --------------------------------------------------------------------------- layouts


def test_every_generated_class_is_checked(pairs: dict[CData, BtfComposite]) -> None:
    unpaired = [k for k, cls in linux_bpf.STRUCTS.items() if cls not in pairs]
    assert not unpaired


def test_sizes_equal_the_kernels(pairs: dict[CData, BtfComposite]) -> None:
    wrong = {cls.__name__: (ctypes.sizeof(cls), t.size) for cls, t in pairs.items()
             if ctypes.sizeof(cls) != t.size}
    assert not wrong


def test_field_offsets_equal_the_kernels(btf: Btf, pairs: dict[CData, BtfComposite]) -> None:
    wrong: list[str] = []
    for cls, t in pairs.items():
        offsets, bits = truth(btf, t)
        for name, off in offsets.items():
            desc: Any = getattr(cls, name)
            if name in bits:
                got = (desc.offset * 8 + (desc.size & 0xFFFF), desc.size >> 16)
                if got != bits[name]:
                    wrong.append(f"{cls.__name__}.{name}: bits {got} != {bits[name]}")
            elif desc.offset != off:
                wrong.append(f"{cls.__name__}.{name}: {desc.offset} != {off}")
    assert not wrong


def test_layout_tables_equal_the_kernels(btf: Btf, pairs: dict[CData, BtfComposite]) -> None:
    for key, cls in linux_bpf.STRUCTS.items():
        t = pairs[cls]
        offsets, bits = truth(btf, t)
        assert linux_bpf.LAYOUTS[key] == (t.size, offsets), key
        assert linux_bpf.BITFIELDS.get(key, {}) == bits, key


def test_required_structs_exist() -> None:
    required = ["bpf_attr", "bpf_prog_info", "bpf_map_info", "bpf_btf_info", "bpf_link_info",
                "__sk_buff", "xdp_md", "bpf_sock", "bpf_sock_addr", "pt_regs", "bpf_insn",
                "bpf_func_info", "bpf_line_info", "bpf_flow_keys", "bpf_sk_lookup",
                "bpf_raw_tracepoint_args", "bpf_perf_event_data", "bpf_spin_lock",
                "bpf_timer", "bpf_tunnel_key", "bpf_fib_lookup", "bpf_sock_ops", "sk_msg_md",
                "sk_reuseport_md", "bpf_sockopt", "bpf_sysctl", "bpf_cgroup_dev_ctx",
                "bpf_xdp_sock", "bpf_tcp_sock", "bpf_sock_tuple"]
    missing = [n for n in required if n not in linux_bpf.STRUCTS]
    assert not missing
    assert linux_bpf.STRUCTS["__sk_buff"] is uapi.sk_buff


def test_bpf_attr_is_the_kernels_size(btf: Btf) -> None:
    attr = btf[btf.find("bpf_attr", BtfKind.UNION)]
    assert isinstance(attr, BtfUnion)
    assert ctypes.sizeof(uapi.bpf_attr) == attr.size


def test_pointer_fields_are_u64() -> None:
    for cls, name in [(uapi.sk_buff, "flow_keys"), (uapi.sk_buff, "sk"),
                      (uapi.bpf_sock_ops, "skb_data"), (uapi.bpf_attr_prog_load, "insns")]:
        field = dict((f[0], f[1]) for f in cls._fields_ if len(f) == 2)
        assert field[name] is ctypes.c_uint64, (cls, name)


def test_bpf_insn_bitfields_pack_like_the_kernel() -> None:
    insn = uapi.bpf_insn(code=0xB7, dst_reg=1, src_reg=2, off=-1, imm=42)
    assert bytes(insn) == bytes([0xB7, 0x21, 0xFF, 0xFF, 42, 0, 0, 0])


def test_anonymous_members_are_reachable_directly() -> None:
    attr = uapi.bpf_attr()
    attr.target_fd = 7
    assert attr.map_type == 7  # first word of every view
    view = uapi.bpf_attr_map_elem(value=5)
    assert view.next_key == 5


# --------------------------------------------------------------------------- commands


VIEW_NAMES = ["bpf_attr_map_create", "bpf_attr_map_elem", "bpf_attr_map_batch",
              "bpf_attr_prog_load", "bpf_attr_obj", "bpf_attr_prog_attach", "bpf_attr_test",
              "bpf_attr_get_id", "bpf_attr_info", "bpf_attr_query", "bpf_attr_raw_tracepoint",
              "bpf_attr_btf_load", "bpf_attr_task_fd_query", "bpf_attr_link_create",
              "bpf_attr_link_update", "bpf_attr_link_detach", "bpf_attr_enable_stats",
              "bpf_attr_iter_create", "bpf_attr_prog_bind_map", "bpf_attr_token_create"]


def test_attr_view_covers_every_command() -> None:
    assert set(uapi.BpfCmd) <= set(uapi.ATTR_VIEW)
    member_types = {f[1] for f in uapi.bpf_attr._fields_}
    assert set(uapi.ATTR_VIEW.values()) <= member_types
    for name in VIEW_NAMES:
        assert getattr(uapi, name) in member_types, name
    assert uapi.ATTR_VIEW[uapi.BPF_PROG_LOAD] is uapi.bpf_attr_prog_load
    assert uapi.ATTR_VIEW[uapi.BPF_MAP_LOOKUP_ELEM] is uapi.bpf_attr_map_elem
    assert uapi.ATTR_VIEW[uapi.BPF_PROG_TEST_RUN] is uapi.bpf_attr_test


def test_views_have_the_kernels_field_names(btf: Btf) -> None:
    attr = btf[btf.find("bpf_attr", BtfKind.UNION)]
    assert isinstance(attr, BtfUnion)
    views = [f[1] for f in uapi.bpf_attr._fields_]
    assert len(views) == len(attr.members)
    for view, m in zip(views, attr.members, strict=True):
        t = btf.resolve(m.type)
        assert isinstance(t, BtfComposite)
        assert ctypes.sizeof(view) == t.size, view


# --------------------------------------------------------------------------- enums


def _enum_classes() -> list[type[enum.IntEnum] | type[enum.IntFlag]]:
    return [v for v in vars(linux_bpf).values()
            if isinstance(v, type) and issubclass(v, enum.IntEnum | enum.IntFlag)
            and v.__module__ == linux_bpf.__name__]


def _btf_enum_of(btf: Btf, cls: type) -> BtfEnum | None:
    doc = (cls.__doc__ or "").split(":")[0].rstrip(".")
    if doc.endswith("(supplement)"):
        return None
    if doc.startswith("enum "):
        t = btf[btf.find(doc.split()[1])]
    else:
        first = doc.removeprefix("anonymous enum of ")
        t = next(x for x in btf.types if isinstance(x, BtfEnum) and not x.name and x.values
                 and x.values[0].name == first)
    assert isinstance(t, BtfEnum)
    return t


def test_enum_values_equal_the_kernels(btf: Btf) -> None:
    checked = 0
    for cls in _enum_classes():
        t = _btf_enum_of(btf, cls)
        if t is None:
            continue
        kernel = {v.name: v.value for v in t.values}
        ours = {name: int(member) for name, member in cls.__members__.items()}
        assert ours == {k: v for k, v in kernel.items() if not k.startswith("__")}, cls
        for name, value in kernel.items():
            assert getattr(linux_bpf, name) == value, name
        checked += 1
    assert checked > 60


def test_named_enum_classes_exist() -> None:
    for name in ["BpfCmd", "BpfMapType", "BpfProgType", "BpfAttachType", "BpfLinkType",
                 "BpfFuncId", "BpfStatsType", "BpfPerfEventType", "BpfAdjRoomMode",
                 "BpfRetCode", "XdpAction", "SkAction", "BpfTaskFdType", "BpfMapFlags",
                 "BpfUpdateFlags"]:
        assert name in uapi.__all__, name
    assert uapi.BpfCmd.BPF_MAP_CREATE == uapi.BPF_MAP_CREATE == 0
    assert uapi.BpfFuncId.BPF_FUNC_map_lookup_elem == 1
    assert issubclass(uapi.BpfMapFlags, enum.IntFlag)
    assert uapi.BPF_ANY == 0 and uapi.BPF_F_NO_PREALLOC == 1
    assert linux_bpf.__MAX_BPF_REG == uapi.MAX_BPF_REG == 11


def test_supplement_agrees_with_btf_where_they_meet(btf: Btf) -> None:
    def array_len(struct_name: str, member: str) -> int:
        t = btf[btf.find(struct_name, BtfKind.STRUCT)]
        assert isinstance(t, BtfComposite)
        arr = btf.resolve(t.member(member).type)
        assert isinstance(arr, BtfArray)
        return arr.nelems

    assert array_len("bpf_prog_info", "tag") == uapi.BPF_TAG_SIZE
    assert array_len("bpf_prog_info", "name") == uapi.BPF_OBJ_NAME_LEN
    assert array_len("bpf_stack_build_id", "build_id") == uapi.BPF_BUILD_ID_SIZE


def test_supplement_values() -> None:
    expect = {"BPF_F_STRICT_ALIGNMENT": 1, "BPF_F_ANY_ALIGNMENT": 2, "BPF_F_TEST_RND_HI32": 4,
              "BPF_F_TEST_STATE_FREQ": 8, "BPF_F_SLEEPABLE": 16, "BPF_F_XDP_HAS_FRAGS": 32,
              "BPF_F_XDP_DEV_BOUND_ONLY": 64, "BPF_F_TEST_REG_INVARIANTS": 128,
              "BPF_PSEUDO_MAP_FD": 1, "BPF_PSEUDO_MAP_VALUE": 2, "BPF_PSEUDO_BTF_ID": 3,
              "BPF_PSEUDO_FUNC": 4, "BPF_PSEUDO_CALL": 1, "BPF_PSEUDO_KFUNC_CALL": 2,
              "BPF_F_ALLOW_MULTI": 2, "BPF_F_QUERY_EFFECTIVE": 1, "BPF_LOG_LEVEL2": 2,
              "BPF_LOG_STATS": 4, "BPF_ALU64": 7, "BPF_JMP32": 6, "BPF_DW": 0x18,
              "BPF_F_TOKEN_FD": 1 << 16, "BPF_F_LINK": 1 << 13}
    assert {k: getattr(uapi, k) for k in expect} == expect


# --------------------------------------------------------------------------- the module


def test_star_import_exports_everything() -> None:
    namespace: dict[str, Any] = {}
    exec("from pybpf.uapi import *", namespace)
    for name in ("BpfCmd", "bpf_attr", "ATTR_VIEW", "LAYOUTS", "BPF_MAP_CREATE", "sk_buff"):
        assert name in namespace


def test_header_names_the_generator_and_kernel() -> None:
    head = Path(linux_bpf.__file__).read_text().splitlines()[:3]
    assert any("tools/gen_uapi.py" in line and "DO NOT EDIT" in line for line in head)
    assert any(linux_bpf.KERNEL_RELEASE in line for line in head)


def test_committed_module_is_what_the_generator_makes(btf: Btf, tmp_path: Path) -> None:
    if os.uname().release != linux_bpf.KERNEL_RELEASE:
        pytest.skip(f"generated on {linux_bpf.KERNEL_RELEASE}, running {os.uname().release}")
    out = tmp_path / "linux_bpf.py"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_uapi.py"), str(VMLINUX),
                    "--out", str(out)], check=True, capture_output=True)
    assert out.read_text() == Path(linux_bpf.__file__).read_text()
