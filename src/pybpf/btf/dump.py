"""``bpftool btf dump``: the raw listing and the C header (``format c``), byte for byte.

Two outputs, matching the bpftool shipped with the reference machine (bpftool 7.1 on
libbpf 1.1):

- :func:`dump_raw` — one ``[id] KIND 'name' …`` line per type with its members, values,
  parameters or section entries on tab-indented lines (``bpftool btf dump file F``);
- :func:`dump_c` — a compilable header (``… format c``): every type in id order through
  libbpf's ``btf_dump`` algorithm, wrapped in the ``__VMLINUX_H__`` guard and the
  ``preserve_access_index`` pragma.

The C dumper follows libbpf's two passes per root type: a topological *ordering* (strong
links — embedding — must be defined first; weak links — through a named pointer target —
may be forward-declared) and an *emission* pass that writes forward declarations only
where a cycle needs them, inlines anonymous structs/unions/enums, reconstructs C
declarator syntax from modifier/pointer/array/function chains, names duplicates
``name___2``, infers ``__attribute__((packed))`` from member alignment, and fills layout
gaps with explicit ``type: N;`` bitfield padding.
"""

from __future__ import annotations

from collections.abc import Iterator

from pybpf.btf.raw import (
    Btf,
    BtfArray,
    BtfComposite,
    BtfDatasec,
    BtfDeclTag,
    BtfEnum,
    BtfEnum64,
    BtfFloat,
    BtfFunc,
    BtfFuncProto,
    BtfFwd,
    BtfInt,
    BtfKind,
    BtfRef,
    BtfStruct,
    BtfType,
    BtfTypedef,
    BtfTypeTag,
    BtfVar,
    BtfVoid,
)

K = BtfKind
PTR_SIZE = 8

_INT_ENC = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}
_FUNC_LINKAGE = {0: "static", 1: "global", 2: "extern"}
_VAR_LINKAGE = {0: "static", 1: "global", 2: "extern"}


# --------------------------------------------------------------------------- raw


def _q(name: str) -> str:
    return name if name else "(anon)"


def raw_lines(btf: Btf, type_ids: list[int] | None = None) -> Iterator[str]:
    """The lines of ``bpftool btf dump`` (default format), without trailing newlines."""
    first = len(btf.base.types) if btf.base is not None else 1
    ids = type_ids if type_ids is not None else range(first, len(btf.types))
    for tid in ids:
        yield from _raw_type(btf, btf.types[tid])


def _raw_type(btf: Btf, t: BtfType) -> Iterator[str]:
    head = f"[{t.id}] {t.kind.name} '{_q(t.name)}'"
    if isinstance(t, BtfInt):
        yield (f"{head} size={t.size} bits_offset={t.bit_offset} nr_bits={t.bits} "
               f"encoding={_INT_ENC.get(int(t.encoding), 'UNKN')}")
    elif isinstance(t, BtfArray):
        yield f"{head} type_id={t.type} index_type_id={t.index_type} nr_elems={t.nelems}"
    elif isinstance(t, BtfComposite):
        yield f"{head} size={t.size} vlen={len(t.members)}"
        for m in t.members:
            line = f"\t'{_q(m.name)}' type_id={m.type} bits_offset={m.bit_offset}"
            if m.bitfield_size:
                line += f" bitfield_size={m.bitfield_size}"
            yield line
    elif isinstance(t, BtfEnum):
        enc = "SIGNED" if t.kind_flag else "UNSIGNED"
        yield f"{head} encoding={enc} size={t.size} vlen={len(t.values)}"
        wide = isinstance(t, BtfEnum64)
        for v in t.values:
            if wide:
                suffix = "LL" if t.kind_flag else "ULL"
                yield f"\t'{_q(v.name)}' val={v.value}{suffix}"
            else:
                yield f"\t'{_q(v.name)}' val={v.value}"
    elif isinstance(t, BtfFwd):
        yield f"{head} fwd_kind={'union' if t.kind_flag else 'struct'}"
    elif isinstance(t, BtfFunc):
        yield f"{head} type_id={t.type} linkage={_FUNC_LINKAGE.get(t.linkage, '(unknown)')}"
    elif isinstance(t, BtfFuncProto):
        yield f"{head} ret_type_id={t.type} vlen={len(t.params)}"
        for p in t.params:
            yield f"\t'{_q(p.name)}' type_id={p.type}"
    elif isinstance(t, BtfVar):
        yield f"{head} type_id={t.type}, linkage={_VAR_LINKAGE.get(t.linkage, '(unknown)')}"
    elif isinstance(t, BtfDatasec):
        yield f"{head} size={t.size} vlen={len(t.vars)}"
        for vsi in t.vars:
            line = f"\ttype_id={vsi.type} offset={vsi.offset} size={vsi.size}"
            if vsi.type < len(btf.types):
                vt = btf.types[vsi.type]
                line += f" ({vt.kind.name if vt.id else 'UNKN'} '{_q(vt.name)}')"
            yield line
    elif isinstance(t, BtfFloat):
        yield f"{head} size={t.size}"
    elif isinstance(t, BtfDeclTag):
        yield f"{head} type_id={t.type} component_idx={t.component_idx}"
    elif isinstance(t, BtfRef):
        yield f"{head} type_id={t.type}"
    else:
        yield head


def dump_raw(btf: Btf, type_ids: list[int] | None = None) -> str:
    """``bpftool btf dump file F`` output (newline-terminated)."""
    return "".join(line + "\n" for line in raw_lines(btf, type_ids))


# --------------------------------------------------------------------------- C

_HEADER = (
    "#ifndef __VMLINUX_H__\n"
    "#define __VMLINUX_H__\n"
    "\n"
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute push (__attribute__((preserve_access_index)), "
    "apply_to = record)\n"
    "#endif\n"
    "\n"
)
_FOOTER = (
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute pop\n"
    "#endif\n"
    "\n"
    "#endif /* __VMLINUX_H__ */\n"
)

NOT_ORDERED, ORDERING, ORDERED = range(3)
NOT_EMITTED, EMITTING, EMITTED = range(3)
_MODS = (K.VOLATILE, K.CONST, K.RESTRICT, K.TYPE_TAG)
_MISSING_BASE_TYPES = {"__Poly8_t": "unsigned char", "__Poly16_t": "unsigned short",
                       "__Poly64_t": "unsigned long long",
                       "__Poly128_t": "unsigned __int128"}


class DumpError(ValueError):
    """BTF the C dumper cannot order (an unsatisfiable type cycle)."""


def _pfx(lvl: int) -> str:
    return "\t" * min(lvl, 13)


class CDumper:
    """libbpf's ``struct btf_dump`` for one BTF: state survives across root types."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        n = len(btf.types)
        self.order_state = [NOT_ORDERED] * n
        self.emit_state = [NOT_EMITTED] * n
        self.fwd_emitted = [False] * n
        self.name_resolved = [False] * n
        self.cached_names: list[str | None] = [None] * n
        self.referenced = [False] * n
        self.type_names: dict[str, int] = {}
        self.ident_names: dict[str, int] = {}
        self.out: list[str] = []
        self.emit_queue: list[int] = []
        self.order_state[0] = ORDERED  # void needs no definition
        self.emit_state[0] = EMITTED
        self._mark_referenced()

    def p(self, s: str) -> None:
        self.out.append(s)

    def t(self, tid: int) -> BtfType:
        return self.btf.types[tid]

    # ---- referenced marks

    def _mark_referenced(self) -> None:
        ref = self.referenced
        for t in self.btf.types[1:]:
            if isinstance(t, BtfRef | BtfFunc | BtfVar | BtfDeclTag):
                ref[t.type] = True
            elif isinstance(t, BtfArray):
                ref[t.index_type] = ref[t.type] = True
            elif isinstance(t, BtfComposite):
                for m in t.members:
                    ref[m.type] = True
            elif isinstance(t, BtfFuncProto):
                for prm in t.params:
                    ref[prm.type] = True
            elif isinstance(t, BtfDatasec):
                for v in t.vars:
                    ref[v.type] = True

    # ---- public

    def dump_type(self, tid: int) -> None:
        """``btf_dump__dump_type``: ``tid`` and everything it needs, once."""
        self.emit_queue = []
        self.order(tid, False)
        for qid in self.emit_queue:
            self.emit_type(qid, 0)

    def text(self) -> str:
        return "".join(self.out)

    # ---- ordering

    def order(self, tid: int, through_ptr: bool) -> int:
        if self.order_state[tid] == ORDERED:
            return 1
        t = self.t(tid)
        if self.order_state[tid] == ORDERING:
            if isinstance(t, BtfComposite) and through_ptr and t.name_off:
                return 0
            raise DumpError(f"unsatisfiable type cycle, id:[{tid}]")
        k = t.kind
        if k in (K.INT, K.FLOAT):
            self.order_state[tid] = ORDERED
            return 0
        if k == K.PTR:
            assert isinstance(t, BtfRef)
            r = self.order(t.type, True)
            self.order_state[tid] = ORDERED
            return r
        if isinstance(t, BtfArray):
            return self.order(t.type, False)
        if isinstance(t, BtfComposite):
            if through_ptr and t.name_off:
                return 0
            self.order_state[tid] = ORDERING
            for m in t.members:
                self.order(m.type, False)
            if t.name_off:
                self.emit_queue.append(tid)
            self.order_state[tid] = ORDERED
            return 1
        if isinstance(t, BtfEnum | BtfFwd):
            if t.name_off or not self.referenced[tid]:
                self.emit_queue.append(tid)
            self.order_state[tid] = ORDERED
            return 1
        if isinstance(t, BtfTypedef):
            strong = self.order(t.type, through_ptr)
            if through_ptr and not strong:
                return 0
            self.emit_queue.append(tid)
            self.order_state[tid] = ORDERED
            return 1
        if k in _MODS:
            assert isinstance(t, BtfRef)
            return self.order(t.type, through_ptr)
        if isinstance(t, BtfFuncProto):
            strong = self.order(t.type, through_ptr) > 0
            for prm in t.params:
                if self.order(prm.type, through_ptr) > 0:
                    strong = True
            return int(strong)
        self.order_state[tid] = ORDERED  # FUNC, VAR, DATASEC, DECL_TAG
        return 0

    # ---- emission

    def is_blacklisted(self, tid: int) -> bool:
        t = self.t(tid)
        return bool(t.name_off) and t.name == "__builtin_va_list"

    def emit_type(self, tid: int, cont_id: int) -> None:
        if self.emit_state[tid] == EMITTED:
            return
        t = self.t(tid)
        top = cont_id == 0
        if self.emit_state[tid] == EMITTING:
            if self.fwd_emitted[tid]:
                return
            if isinstance(t, BtfComposite):
                if tid == cont_id or not t.name_off:
                    return
                self.emit_struct_fwd(tid, t)
                self.p(";\n\n")
                self.fwd_emitted[tid] = True
            elif isinstance(t, BtfTypedef):
                if not self.is_blacklisted(tid):
                    self.emit_typedef_def(tid, t, 0)
                    self.p(";\n\n")
                self.fwd_emitted[tid] = True
            return
        if isinstance(t, BtfInt):
            name = self.type_name(tid)
            if name in _MISSING_BASE_TYPES:
                self.p(f"typedef {_MISSING_BASE_TYPES[name]} {name};\n\n")
            self.emit_state[tid] = EMITTED
        elif isinstance(t, BtfEnum):
            if top:
                self.emit_enum_def(tid, t, 0)
                self.p(";\n\n")
            self.emit_state[tid] = EMITTED
        elif t.kind == K.PTR or t.kind in _MODS:
            assert isinstance(t, BtfRef)
            self.emit_type(t.type, cont_id)
        elif isinstance(t, BtfArray):
            self.emit_type(t.type, cont_id)
        elif isinstance(t, BtfFwd):
            self.emit_fwd_def(tid, t)
            self.p(";\n\n")
            self.emit_state[tid] = EMITTED
        elif isinstance(t, BtfTypedef):
            self.emit_state[tid] = EMITTING
            self.emit_type(t.type, tid)
            if not self.fwd_emitted[tid] and not self.is_blacklisted(tid):
                self.emit_typedef_def(tid, t, 0)
                self.p(";\n\n")
            self.emit_state[tid] = EMITTED
        elif isinstance(t, BtfComposite):
            self.emit_state[tid] = EMITTING
            if top or not t.name_off:
                new_cont = cont_id if not t.name_off else tid
                for m in t.members:
                    self.emit_type(m.type, new_cont)
            elif not self.fwd_emitted[tid] and tid != cont_id:
                self.emit_struct_fwd(tid, t)
                self.p(";\n\n")
                self.fwd_emitted[tid] = True
            if top:
                self.emit_struct_def(tid, t, 0)
                self.p(";\n\n")
                self.emit_state[tid] = EMITTED
            else:
                self.emit_state[tid] = NOT_EMITTED
        elif isinstance(t, BtfFuncProto):
            self.emit_type(t.type, cont_id)
            for prm in t.params:
                self.emit_type(prm.type, cont_id)

    # ---- sizes and alignment (libbpf btf__align_of / btf__resolve_size)

    def align_of(self, tid: int) -> int:
        t = self.t(tid)
        if isinstance(t, BtfInt | BtfEnum | BtfFloat):
            return min(PTR_SIZE, t.size)
        if t.kind == K.PTR:
            return PTR_SIZE
        if isinstance(t, BtfTypedef) or t.kind in _MODS:
            assert isinstance(t, BtfRef)
            return self.align_of(t.type)
        if isinstance(t, BtfArray):
            return self.align_of(t.type)
        if isinstance(t, BtfComposite):
            max_align = 1
            for m in t.members:
                a = self.align_of(m.type)
                if a <= 0:
                    return a
                max_align = max(max_align, a)
                if not m.bitfield_size and m.bit_offset % (8 * a):
                    return 1
            return 1 if t.size % max_align else max_align
        return 0

    def resolve_size(self, tid: int) -> int:
        nelems, t = 1, self.t(tid)
        for _ in range(32):
            if isinstance(t, BtfVoid):
                return -1
            if isinstance(t, BtfInt | BtfComposite | BtfEnum | BtfDatasec | BtfFloat):
                return nelems * t.size
            if t.kind == K.PTR:
                return nelems * PTR_SIZE
            if isinstance(t, BtfArray):
                nelems *= t.nelems
                t = self.t(t.type)
            elif isinstance(t, BtfRef | BtfVar | BtfDeclTag):
                t = self.t(t.type)
            else:
                return -1
        return -1

    def is_struct_packed(self, t: BtfComposite) -> bool:
        max_align = 1
        for m in t.members:
            a = self.align_of(m.type)
            if a and not m.bitfield_size and m.bit_offset % (8 * a):
                return True
            max_align = max(a, max_align)
        return bool(t.size % max_align)

    # ---- definitions

    def emit_bit_padding(self, cur: int, nxt: int, next_align: int, in_bitfield: bool,
                         lvl: int) -> None:
        pads = (("long", PTR_SIZE * 8), ("int", 32), ("short", 16), ("char", 8))
        if cur >= nxt:
            return
        new_off = cur
        pad_type, pad_bits = pads[-1]
        for name, bits in pads:
            pad_type, pad_bits = name, bits
            new_off = _roundup(cur, bits)
            if new_off <= nxt:
                break
        if cur < new_off <= nxt:
            if (in_bitfield
                    or (new_off == nxt and _roundup(cur, next_align * 8) != new_off)
                    or (new_off != nxt and nxt - new_off <= new_off - cur)):
                self.p(f"\n{_pfx(lvl)}{pad_type}: {new_off - cur if in_bitfield else 0};")
            cur = new_off
        while cur != nxt:
            bits = min(nxt - cur, pad_bits)
            if bits == pad_bits:
                self.p(f"\n{_pfx(lvl)}{pad_type}: {pad_bits};")
                cur += bits
                continue
            for pad_type, pad_bits in reversed(pads):
                if pad_bits < bits:
                    continue
                self.p(f"\n{_pfx(lvl)}{pad_type}: {bits};")
                cur += bits
                break

    def emit_struct_fwd(self, tid: int, t: BtfType) -> None:
        kw = "struct" if isinstance(t, BtfStruct) else "union"
        self.p(f"{kw}{' ' if t.name_off else ''}{self.type_name(tid)}")

    def emit_struct_def(self, tid: int, t: BtfComposite, lvl: int) -> None:
        is_struct = isinstance(t, BtfStruct)
        align = self.align_of(tid)
        packed = self.is_struct_packed(t) if is_struct else False
        self.p(f"{'struct' if is_struct else 'union'}{' ' if t.name_off else ''}"
               f"{self.type_name(tid)} {{")
        off, prev_bitfield = 0, False
        for m in t.members:
            m_sz, m_off = m.bitfield_size, m.bit_offset
            m_align = 1 if packed else self.align_of(m.type)
            in_bitfield = prev_bitfield and m_sz != 0
            self.emit_bit_padding(off, m_off, m_align, in_bitfield, lvl + 1)
            self.p(f"\n{_pfx(lvl + 1)}")
            self.emit_type_decl(m.type, m.name, lvl + 1)
            if m_sz:
                self.p(f": {m_sz}")
                off = m_off + m_sz
                prev_bitfield = True
            else:
                off = m_off + max(0, self.resolve_size(m.type)) * 8
                prev_bitfield = False
            self.p(";")
        if is_struct:
            self.emit_bit_padding(off, t.size * 8, align, False, lvl + 1)
        if t.members or t.size:
            self.p(f"\n{_pfx(lvl)}}}")
        else:
            self.p("}")
        if packed:
            self.p(" __attribute__((packed))")

    def emit_enum_fwd(self, tid: int) -> None:
        self.p(f"enum {self.type_name(tid)}")

    def emit_enum_def(self, tid: int, t: BtfEnum, lvl: int) -> None:
        self.p(f"enum{' ' if t.name_off else ''}{self.type_name(tid)}")
        if not t.values:
            return
        self.p(" {")
        wide = isinstance(t, BtfEnum64)
        for v in t.values:
            dup = self._name_dups(self.ident_names, v.name)
            name = f"{v.name}___{dup}" if dup > 1 else v.name
            if wide:
                val = v.value
                if not t.kind_flag:
                    val &= (1 << 64) - 1
                self.p(f"\n{_pfx(lvl + 1)}{name} = {val}{'LL' if t.kind_flag else 'ULL'},")
            else:
                self.p(f"\n{_pfx(lvl + 1)}{name} = {v.value},")
        self.p(f"\n{_pfx(lvl)}}}")
        # The reference bpftool (7.1) predates libbpf's mode(byte)/mode(word) attributes
        # for 1- and 8-byte enums, so none are written here either.

    def emit_fwd_def(self, tid: int, t: BtfFwd) -> None:
        self.p(f"{'union' if t.kind_flag else 'struct'} {self.type_name(tid)}")

    def emit_typedef_def(self, tid: int, t: BtfTypedef, lvl: int) -> None:
        name = self.ident_name(tid)
        if t.type == 0 and name == "__gnuc_va_list":
            self.p("typedef __builtin_va_list __gnuc_va_list")
            return
        self.p("typedef ")
        self.emit_type_decl(t.type, name, lvl)

    # ---- declarators

    def emit_type_decl(self, tid: int, fname: str, lvl: int) -> None:
        stack: list[int] = []
        while True:
            stack.append(tid)
            if tid == 0:
                break
            t = self.t(tid)
            if t.kind == K.PTR or t.kind in _MODS or isinstance(t, BtfFuncProto):
                assert isinstance(t, BtfRef | BtfFuncProto)
                tid = t.type
            elif isinstance(t, BtfArray):
                tid = t.type
            else:
                break
        self.emit_type_chain(stack, fname, lvl)

    def emit_mods(self, decls: list[int]) -> None:
        while decls:
            k = self.t(decls[-1]).kind
            if k == K.VOLATILE:
                self.p("volatile ")
            elif k == K.CONST:
                self.p("const ")
            elif k == K.RESTRICT:
                self.p("restrict ")
            else:
                return
            decls.pop()

    def drop_mods(self, decls: list[int]) -> None:
        while decls and self.t(decls[-1]).kind in _MODS:
            decls.pop()

    def emit_name(self, name: str, last_was_ptr: bool) -> None:
        self.p(f"{' ' if name and not last_was_ptr else ''}{name}")

    def emit_type_chain(self, decls: list[int], fname: str, lvl: int) -> None:
        last_was_ptr = True
        while decls:
            tid = decls.pop()
            if tid == 0:
                self.emit_mods(decls)
                self.p("void")
                last_was_ptr = False
                continue
            t = self.t(tid)
            k = t.kind
            if isinstance(t, BtfInt | BtfFloat):
                self.emit_mods(decls)
                self.p(t.name)
            elif isinstance(t, BtfComposite):
                self.emit_mods(decls)
                if not t.name_off:
                    self.emit_struct_def(tid, t, lvl)
                else:
                    self.emit_struct_fwd(tid, t)
            elif isinstance(t, BtfEnum):
                self.emit_mods(decls)
                if not t.name_off:
                    self.emit_enum_def(tid, t, lvl)
                else:
                    self.emit_enum_fwd(tid)
            elif isinstance(t, BtfFwd):
                self.emit_mods(decls)
                self.emit_fwd_def(tid, t)
            elif isinstance(t, BtfTypedef):
                self.emit_mods(decls)
                self.p(self.ident_name(tid))
            elif k == K.PTR:
                self.p("*" if last_was_ptr else " *")
            elif k == K.VOLATILE:
                self.p(" volatile")
            elif k == K.CONST:
                self.p(" const")
            elif k == K.RESTRICT:
                self.p(" restrict")
            elif isinstance(t, BtfTypeTag):
                self.emit_mods(decls)
                self.p(f' __attribute__((btf_type_tag("{t.name}")))')
            elif isinstance(t, BtfArray):
                self.drop_mods(decls)
                if not decls:
                    self.emit_name(fname, last_was_ptr)
                    self.p(f"[{t.nelems}]")
                    return
                multidim = isinstance(self.t(decls[-1]), BtfArray)
                if fname and not last_was_ptr:
                    self.p(" ")
                if not multidim:
                    self.p("(")
                self.emit_type_chain(decls, fname, lvl)
                if not multidim:
                    self.p(")")
                self.p(f"[{t.nelems}]")
                return
            elif isinstance(t, BtfFuncProto):
                self.drop_mods(decls)
                if decls:
                    self.p(" (")
                    self.emit_type_chain(decls, fname, lvl)
                    self.p(")")
                else:
                    self.emit_name(fname, last_was_ptr)
                self.p("(")
                params = t.params
                if not params or (len(params) == 1 and params[0].type == 0):
                    self.p("void)")  # libbpf's fixed no-args syntax, as bpftool prints
                    return
                for i, prm in enumerate(params):
                    if i:
                        self.p(", ")
                    if i == len(params) - 1 and prm.type == 0:
                        self.p("...")
                        break
                    self.emit_type_decl(prm.type, prm.name, lvl)
                self.p(")")
                return
            else:
                return
            last_was_ptr = k == K.PTR
        self.emit_name(fname, last_was_ptr)

    # ---- names

    @staticmethod
    def _name_dups(table: dict[str, int], name: str) -> int:
        n = table.get(name, 0) + 1
        table[name] = n
        return n

    def _resolve_name(self, tid: int, table: dict[str, int]) -> str:
        t = self.t(tid)
        if not t.name_off:
            return ""
        if self.name_resolved[tid]:
            return self.cached_names[tid] or t.name
        if isinstance(t, BtfFwd) or (t.kind == K.ENUM and isinstance(t, BtfEnum)
                                     and not t.values):
            self.name_resolved[tid] = True
            return t.name
        dup = self._name_dups(table, t.name)
        if dup > 1:
            self.cached_names[tid] = f"{t.name}___{dup}"[:255]
        self.name_resolved[tid] = True
        return self.cached_names[tid] or t.name

    def type_name(self, tid: int) -> str:
        return self._resolve_name(tid, self.type_names)

    def ident_name(self, tid: int) -> str:
        return self._resolve_name(tid, self.ident_names)


def _roundup(x: int, y: int) -> int:
    return (x + y - 1) // y * y


def dump_c(btf: Btf, type_ids: list[int] | None = None, *, guard: bool = True) -> str:
    """``bpftool btf dump file F format c`` output.

    Raises :class:`DumpError` for BTF whose types cannot be ordered for C.
    """
    d = CDumper(btf)
    first = len(btf.base.types) if btf.base is not None else 1
    for tid in (type_ids if type_ids is not None else range(first, len(btf.types))):
        d.dump_type(tid)
    body = d.text()
    return _HEADER + body + _FOOTER if guard else body


__all__ = ["CDumper", "DumpError", "dump_c", "dump_raw", "raw_lines"]
