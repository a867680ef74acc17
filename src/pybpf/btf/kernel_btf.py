"""The kernel BTF of a pybpf instance: the types its program types and objects expose.

On Linux, ``/sys/kernel/btf/vmlinux`` describes every kernel type; libbpf resolves CO-RE
relocations against it and the verifier checks BTF-typed accesses with it. A pybpf
instance is not a Linux kernel, so its "vmlinux" is built here, from the same generated
ctypes layouts (:mod:`pybpf.uapi`) that the runtime uses for its context buffers — one
definition of the ABI, so a CO-RE read of ``skb->len`` resolves to the offset pybpf's
``__sk_buff`` really has.

Contents:

- base integer types and the ``__u8``…``__s64`` typedefs;
- every program-visible context struct (``__sk_buff``, ``xdp_md``, ``bpf_sock``,
  ``pt_regs``, ``bpf_raw_tracepoint_args``, ``bpf_sock_addr``, …) with the uapi's
  ``__bpf_md_ptr`` members as the anonymous single-pointer unions Linux declares;
- the uapi enums (``bpf_map_type``, ``bpf_prog_type``, ``bpf_attach_type``,
  ``bpf_link_type``, ``bpf_func_id``);
- pybpf's own kernel objects as native structs, for iterators and struct_ops to come:
  ``struct bpf_map`` (the map header of :mod:`pybpf.maps.core`), ``struct bpf_prog`` /
  ``struct bpf_prog_aux`` and ``struct bpf_link`` (layouts defined here,
  :data:`OBJECT_LAYOUTS`), and the iterator contexts ``bpf_iter_meta``,
  ``bpf_iter__bpf_map``, ``bpf_iter__bpf_prog``, ``bpf_iter__bpf_link``,
  ``bpf_iter__bpf_map_elem`` with the member names Linux's iterator programs use.

:func:`kernel_btf` returns the parsed :class:`~pybpf.btf.raw.Btf`; :func:`kernel_btf_blob`
the raw blob (valid for ``BPF_BTF_LOAD``: tests load it into the live kernel).
"""

from __future__ import annotations

import ctypes
import functools
from enum import IntEnum

from pybpf.btf.raw import (
    Btf,
    BtfArray,
    BtfEnum,
    BtfEnumValue,
    BtfFwd,
    BtfInt,
    BtfMember,
    BtfPtr,
    BtfStruct,
    BtfType,
    BtfTypedef,
    BtfUnion,
    IntEncoding,
)
from pybpf.btf.writer import StringTable, build_blob, encode_types

#: Context and helper structs exposed to programs, by their C name in :data:`STRUCTS`.
CTX_STRUCTS = (
    "__sk_buff", "xdp_md", "bpf_sock", "bpf_tcp_sock", "bpf_xdp_sock", "bpf_sock_addr",
    "bpf_sock_ops", "sk_msg_md", "sk_reuseport_md", "bpf_perf_event_data", "pt_regs",
    "bpf_raw_tracepoint_args", "bpf_cgroup_dev_ctx", "bpf_sysctl", "bpf_sockopt",
    "bpf_sk_lookup", "bpf_flow_keys", "bpf_sock_tuple", "bpf_tunnel_key", "bpf_xfrm_state",
    "bpf_fib_lookup", "bpf_redir_neigh", "bpf_pidns_info", "bpf_perf_event_value",
    "bpf_spin_lock", "bpf_timer", "bpf_wq", "bpf_dynptr", "bpf_list_head", "bpf_list_node",
    "bpf_rb_root", "bpf_rb_node", "bpf_refcount", "bpf_iter_num",
)

#: ``__bpf_md_ptr(type, name)`` members: (struct, member) -> pointee struct, "" for void.
MD_POINTERS: dict[tuple[str, str], str] = {
    ("__sk_buff", "flow_keys"): "bpf_flow_keys",
    ("__sk_buff", "sk"): "bpf_sock",
    ("sk_msg_md", "data"): "",
    ("sk_msg_md", "data_end"): "",
    ("sk_msg_md", "sk"): "bpf_sock",
    ("sk_reuseport_md", "data"): "",
    ("sk_reuseport_md", "data_end"): "",
    ("sk_reuseport_md", "sk"): "bpf_sock",
    ("sk_reuseport_md", "migrating_sk"): "bpf_sock",
    ("bpf_sock_addr", "sk"): "bpf_sock",
    ("bpf_sock_ops", "sk"): "bpf_sock",
    ("bpf_sock_ops", "skb_data"): "",
    ("bpf_sock_ops", "skb_data_end"): "",
    ("bpf_sockopt", "sk"): "bpf_sock",
    ("bpf_sockopt", "optval"): "",
    ("bpf_sockopt", "optval_end"): "",
    ("bpf_sk_lookup_anon0", "sk"): "bpf_sock",
}

#: Uapi enums carried into the BTF: C name -> IntEnum class name in :mod:`pybpf.uapi`.
ENUMS = {"bpf_map_type": "BpfMapType", "bpf_prog_type": "BpfProgType",
         "bpf_attach_type": "BpfAttachType", "bpf_link_type": "BpfLinkType",
         "bpf_func_id": "BpfFuncId"}


# --------------------------------------------------------------------------- objects


class bpf_map(ctypes.Structure):
    """pybpf's ``struct bpf_map``: the native map header of :mod:`pybpf.maps.core`."""

    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("elem_size", ctypes.c_uint32),
                ("data", ctypes.c_uint64), ("aux", ctypes.c_uint64),
                ("id", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                ("type_specific", ctypes.c_uint8 * 80)]


class bpf_prog_aux(ctypes.Structure):
    """pybpf's ``struct bpf_prog_aux``: the fields iterators and bpftool read."""

    _fields_ = [("id", ctypes.c_uint32), ("func_cnt", ctypes.c_uint32),
                ("verified_insns", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
                ("load_time", ctypes.c_uint64), ("name", ctypes.c_char * 16),
                ("attach_func_name", ctypes.c_uint64)]


class bpf_prog(ctypes.Structure):
    """pybpf's ``struct bpf_prog``: type, length, tag and a pointer to its aux."""

    _fields_ = [("pages", ctypes.c_uint16), ("jited", ctypes.c_uint8),
                ("gpl_compatible", ctypes.c_uint8), ("type", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32), ("len", ctypes.c_uint32),
                ("jited_len", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("aux", ctypes.c_uint64), ("bpf_func", ctypes.c_uint64)]


class bpf_link(ctypes.Structure):
    """pybpf's ``struct bpf_link``: id, type and the attached program."""

    _fields_ = [("refcnt", ctypes.c_uint64), ("id", ctypes.c_uint32),
                ("type", ctypes.c_uint32), ("prog", ctypes.c_uint64)]


#: Native layouts of pybpf's kernel objects, for the syscall layer to allocate.
OBJECT_LAYOUTS: dict[str, type[ctypes.Structure]] = {
    "bpf_map": bpf_map, "bpf_prog_aux": bpf_prog_aux, "bpf_prog": bpf_prog,
    "bpf_link": bpf_link,
}
#: Pointer members of the object structs: (struct, member) -> pointee struct.
OBJECT_POINTERS: dict[tuple[str, str], str] = {
    ("bpf_prog", "aux"): "bpf_prog_aux", ("bpf_link", "prog"): "bpf_prog",
    ("bpf_map", "data"): "", ("bpf_map", "aux"): "", ("bpf_prog", "bpf_func"): "",
    ("bpf_prog_aux", "attach_func_name"): "char",
}
#: Enum-typed members of the object structs.
OBJECT_ENUMS: dict[tuple[str, str], str] = {
    ("bpf_map", "map_type"): "bpf_map_type", ("bpf_prog", "type"): "bpf_prog_type",
    ("bpf_prog", "expected_attach_type"): "bpf_attach_type",
    ("bpf_link", "type"): "bpf_link_type",
}
#: Iterator contexts: name -> [(member, pointee struct or "" for void)], each member an
#: 8-byte anonymous union holding one pointer, as ``DEFINE_BPF_ITER_FUNC`` lays them out.
ITER_CONTEXTS: dict[str, list[tuple[str, str]]] = {
    "bpf_iter__bpf_map": [("meta", "bpf_iter_meta"), ("map", "bpf_map")],
    "bpf_iter__bpf_prog": [("meta", "bpf_iter_meta"), ("prog", "bpf_prog")],
    "bpf_iter__bpf_link": [("meta", "bpf_iter_meta"), ("link", "bpf_link")],
    "bpf_iter__bpf_map_elem": [("meta", "bpf_iter_meta"), ("map", "bpf_map"),
                               ("key", ""), ("value", "")],
}


# --------------------------------------------------------------------------- builder


class _Builder:
    """Accumulates BTF types; ids are list positions (1-based)."""

    def __init__(self) -> None:
        self.types: list[BtfType] = []
        self.ints: dict[str, int] = {}
        self.typedefs: dict[str, int] = {}
        self.structs: dict[str, int] = {}
        self.fwds: dict[str, int] = {}
        self.enums: dict[str, int] = {}
        self.ptrs: dict[int, int] = {}
        self.arrays: dict[tuple[int, int], int] = {}
        from pybpf.uapi import STRUCTS

        self.ctypes_names = {cls: name for name, cls in STRUCTS.items()}

    def add(self, t: BtfType) -> int:
        t.id = len(self.types) + 1
        self.types.append(t)
        return t.id

    # ---- scalars

    def int_(self, name: str, size: int, enc: IntEncoding) -> int:
        if name not in self.ints:
            self.ints[name] = self.add(BtfInt(0, name, 0, False, size, enc, 0, size * 8))
        return self.ints[name]

    def scalar(self, code: str) -> int:
        """A ctypes type code (``'I'``, ``'q'``, ``'c'`` …) as the uapi spells it."""
        if code == "c":
            return self.int_("char", 1, IntEncoding.SIGNED)
        if code == "?":
            return self.int_("_Bool", 1, IntEncoding.BOOL)
        if code == "P":
            return self.ptr(0)
        size = ctypes.sizeof(getattr(ctypes, {"b": "c_int8", "B": "c_uint8",
                                              "h": "c_int16", "H": "c_uint16",
                                              "i": "c_int32", "I": "c_uint32",
                                              "l": "c_long", "L": "c_ulong",
                                              "q": "c_int64", "Q": "c_uint64"}[code]))
        signed = code.islower()
        base = {1: "char", 2: "short", 4: "int", 8: "long long"}[size]
        cname = (("signed " if size == 1 else "") if signed else "unsigned ") + base
        iid = self.int_(cname, size, IntEncoding.SIGNED if signed else IntEncoding.NONE)
        tname = f"__{'s' if signed else 'u'}{size * 8}"
        if tname not in self.typedefs:
            self.typedefs[tname] = self.add(BtfTypedef(0, tname, 0, False, iid))
        return self.typedefs[tname]

    def ptr(self, target: int) -> int:
        if target not in self.ptrs:
            self.ptrs[target] = self.add(BtfPtr(0, "", 0, False, target))
        return self.ptrs[target]

    def array(self, elem: int, n: int) -> int:
        if (elem, n) not in self.arrays:
            index = self.int_("__ARRAY_SIZE_TYPE__", 4, IntEncoding.NONE)
            self.arrays[(elem, n)] = self.add(BtfArray(0, "", 0, False, elem, index, n))
        return self.arrays[(elem, n)]

    def struct_ref(self, name: str) -> int:
        """The struct called ``name`` if built, else a forward declaration of it."""
        if name in self.structs:
            return self.structs[name]
        if name not in self.fwds:
            self.fwds[name] = self.add(BtfFwd(0, name, 0, False))
        return self.fwds[name]

    def pointer_to(self, pointee: str) -> int:
        if not pointee:
            return self.ptr(0)
        if pointee == "char":
            return self.ptr(self.scalar("c"))
        return self.ptr(self.struct_ref(pointee))

    def enum(self, cname: str) -> int:
        if cname not in self.enums:
            from pybpf import uapi

            cls: type[IntEnum] = getattr(uapi, ENUMS[cname])
            values = tuple(BtfEnumValue(m.name, 0, int(m.value)) for m in cls)
            self.enums[cname] = self.add(BtfEnum(0, cname, 0, False, 4, values))
        return self.enums[cname]

    # ---- ctypes

    def ctype(self, tp: type) -> int:
        if issubclass(tp, ctypes.Array):
            elem: type = tp._type_  # type: ignore[assignment]
            length: int = tp._length_  # type: ignore[assignment]
            return self.array(self.ctype(elem), length)
        if issubclass(tp, ctypes.Structure | ctypes.Union):
            return self.composite(tp)
        return self.scalar(tp._type_)  # type: ignore[attr-defined]

    def composite(self, tp: type, name: str | None = None,
                  pointers: dict[tuple[str, str], str] | None = None,
                  enums: dict[tuple[str, str], str] | None = None) -> int:
        cname = name if name is not None else self.ctypes_names.get(tp, "")
        # the generator names nested anonymous types after their parent and says so
        anonymous = "(anonymous)" in (tp.__doc__ or "") or not cname
        if not anonymous and cname in self.structs:
            return self.structs[cname]
        pointers = MD_POINTERS if pointers is None else pointers
        enums = enums or {}
        anon_fields = set(getattr(tp, "_anonymous_", ()))
        members: list[BtfMember] = []
        bitfields = False
        for field in tp._fields_:  # type: ignore[attr-defined]
            fname, ftype = field[0], field[1]
            desc = getattr(tp, fname)
            bit_off, bit_size = desc.offset * 8, 0
            if len(field) == 3:
                bitfields = True
                bit_size = desc.size >> 16
                bit_off += desc.size & 0xFFFF
            key = (cname, fname)
            if key in pointers:
                mtype = self.md_ptr_union(fname, pointers[key])
                fname = ""
            elif key in enums:
                mtype = self.enum(enums[key])
            else:
                mtype = self.ctype(ftype)
            mname = "" if fname in anon_fields else fname
            members.append(BtfMember(mname, 0, mtype, bit_off, bit_size))
        cls = BtfUnion if issubclass(tp, ctypes.Union) else BtfStruct
        t = cls(0, "" if anonymous else cname, 0, bitfields, ctypes.sizeof(tp), tuple(members))
        tid = self.add(t)
        if not anonymous:
            self.structs[cname] = tid
        return tid

    def md_ptr_union(self, member: str, pointee: str) -> int:
        """``__bpf_md_ptr``: an anonymous 8-byte union of one pointer member."""
        ptr = self.pointer_to(pointee)
        return self.add(BtfUnion(0, "", 0, False, 8, (BtfMember(member, 0, ptr, 0, 0),)))

    def iter_ctx(self, name: str, members: list[tuple[str, str]]) -> int:
        ms = tuple(BtfMember("", 0, self.md_ptr_union(m, p), 64 * i, 0)
                   for i, (m, p) in enumerate(members))
        tid = self.add(BtfStruct(0, name, 0, False, 8 * len(members), ms))
        self.structs[name] = tid
        return tid

    def resolve_fwds(self) -> None:
        """Point pointers at full definitions where a forward declaration was used first."""
        for t in self.types:
            if isinstance(t, BtfPtr):
                target = self.types[t.type - 1] if t.type else None
                if isinstance(target, BtfFwd) and target.name in self.structs:
                    t.type = self.structs[target.name]


def _build() -> list[BtfType]:
    from pybpf.uapi import STRUCTS

    b = _Builder()
    for cname in ENUMS:
        b.enum(cname)
    for name in CTX_STRUCTS:
        if name in STRUCTS:
            b.composite(STRUCTS[name], name)
    meta = b.add(BtfStruct(0, "bpf_iter_meta", 0, False, 24, (
        BtfMember("", 0, b.md_ptr_union("seq", "seq_file"), 0, 0),
        BtfMember("session_id", 0, b.scalar("Q"), 64, 0),
        BtfMember("seq_num", 0, b.scalar("Q"), 128, 0))))
    b.structs["bpf_iter_meta"] = meta
    for name, layout in OBJECT_LAYOUTS.items():
        b.composite(layout, name, OBJECT_POINTERS, OBJECT_ENUMS)
    for name, members in ITER_CONTEXTS.items():
        b.iter_ctx(name, members)
    b.resolve_fwds()
    return b.types


@functools.cache
def kernel_btf_blob() -> bytes:
    """The instance kernel BTF as a raw blob (what ``/sys/kernel/btf/vmlinux`` holds)."""
    strings = StringTable()
    return build_blob(encode_types(_build(), strings), bytes(strings.data))


@functools.cache
def kernel_btf() -> Btf:
    """The instance kernel BTF, parsed (shared; treat as read-only)."""
    return Btf.from_bytes(kernel_btf_blob())


__all__ = ["CTX_STRUCTS", "ITER_CONTEXTS", "OBJECT_LAYOUTS", "kernel_btf", "kernel_btf_blob"]
