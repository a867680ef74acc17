"""Resolving ``__kconfig`` and ``__ksym`` externs (libbpf's ``bpf_object__resolve_externs``).

- ``.kconfig`` externs are values written into the ``.kconfig`` map: ``LINUX_KERNEL_VERSION``
  (from the release string), ``LINUX_HAS_*`` feature flags, and ``CONFIG_*`` options parsed
  from a kernel config (``y``/``n``/``m``, numbers, strings);
- ``.ksyms`` externs become instruction operands: typed variables → the BTF id of the
  kernel's VAR (``BPF_PSEUDO_BTF_ID``), functions → the kfunc's BTF id, typeless symbols →
  their kallsyms address.

The *source* of these facts is a :class:`KernelFacts`: the host's (``uname``,
``/boot/config-*``/``/proc/config.gz``, ``/proc/kallsyms``, vmlinux BTF) when comparing with
libbpf on this machine, or a pybpf instance's own.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import struct
from dataclasses import dataclass, field

from pybpf.btf.raw import Btf, BtfFunc, BtfVar
from pybpf.loader.elf_object import BpfObjectSpec
from pybpf.loader.errors import LoaderError, einval
from pybpf.loader.model import ExternType, KcfgType


@dataclass
class KernelFacts:
    """What extern resolution needs to know about the target kernel."""

    release: str = "6.18.0"
    kconfig: dict[str, str] = field(default_factory=dict)
    kallsyms: dict[str, int] = field(default_factory=dict)
    btf: Btf | None = None
    features: dict[str, bool] = field(default_factory=lambda: {
        "LINUX_HAS_BPF_COOKIE": True, "LINUX_HAS_SYSCALL_WRAPPER": True})

    @classmethod
    def host(cls, btf: Btf | None = None, *, kallsyms: bool = False) -> KernelFacts:
        """The running kernel's facts, as libbpf gathers them."""
        rel = os.uname().release
        facts = cls(release=rel, kconfig=read_host_kconfig(rel), btf=btf)
        if kallsyms:
            facts.kallsyms = read_kallsyms()
        return facts


def kernel_version_code(release: str) -> int:
    """``KERNEL_VERSION(a, b, c)`` of a release string, patch clamped to 255 like libbpf."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return 0
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (a << 16) + (b << 8) + min(c, 255)


def parse_kconfig(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("CONFIG_") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k] = v
    return out


def read_host_kconfig(release: str) -> dict[str, str]:
    path = f"/boot/config-{release}"
    try:
        if os.path.exists(path):
            with open(path) as f:
                return parse_kconfig(f.read())
        if os.path.exists("/proc/config.gz"):
            with gzip.open("/proc/config.gz", "rt") as g:
                return parse_kconfig(g.read())
    except OSError:
        pass
    return {}


def read_kallsyms() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] not in out:
                    out[parts[2]] = int(parts[0], 16)
    except OSError:
        pass
    return out


def resolve_externs(obj: BpfObjectSpec, facts: KernelFacts) -> None:
    """Fill the ``.kconfig`` map data and the ksym fields of ``obj.externs``."""
    if not obj.externs:
        return
    kdata = obj.maps[obj.kconfig_map_idx].data if obj.kconfig_map_idx >= 0 else None
    for ext in obj.externs:
        if ext.type == ExternType.KCFG:
            assert kdata is not None
            value: int | str | None
            if ext.name.startswith("CONFIG_"):
                raw = facts.kconfig.get(ext.name)
                if raw is None:
                    continue
                value = _kconfig_value(ext.name, raw, ext.kcfg_type)
            elif ext.name == "LINUX_KERNEL_VERSION":
                value = kernel_version_code(facts.release)
            elif ext.name in facts.features:
                value = int(facts.features[ext.name])
            elif not ext.name.startswith("LINUX_") or not ext.is_weak:
                raise einval(f"extern (kcfg) '{ext.name}': unrecognized virtual extern")
            else:
                continue
            _store(kdata, ext.kcfg_data_off, ext.kcfg_sz, ext.kcfg_type, ext.kcfg_signed,
                   value, ext.name)
            ext.is_set = True
        elif ext.type == ExternType.KSYM:
            _resolve_ksym(obj, ext, facts)
    for ext in obj.externs:
        if not ext.is_set and not ext.is_weak:
            raise LoaderError(errno.ESRCH, f"extern '{ext.name}' (strong): not resolved")


def _kconfig_value(name: str, raw: str, kind: KcfgType) -> int | str:
    if kind in (KcfgType.BOOL, KcfgType.TRISTATE) or raw in ("y", "n", "m"):
        tri = {"y": 1, "n": 0, "m": 2}.get(raw)
        if tri is None:
            raise einval(f"extern (kcfg) '{name}': value '{raw}' isn't a tristate")
        if kind == KcfgType.BOOL and tri == 2:
            raise einval(f"extern (kcfg) '{name}': value 'm' isn't supported for bool")
        return tri
    if kind == KcfgType.CHAR_ARR:
        if not (raw.startswith('"') and raw.endswith('"')):
            raise einval(f"extern (kcfg) '{name}': invalid string config '{raw}'")
        return raw[1:-1]
    try:
        return int(raw, 0)
    except ValueError:
        raise einval(f"extern (kcfg) '{name}': value '{raw}' isn't a number") from None


def _store(buf: bytearray, off: int, size: int, kind: KcfgType, signed: bool,
           value: int | str, name: str) -> None:
    if isinstance(value, str):
        data = value.encode()[: size - 1]
        buf[off: off + size] = data.ljust(size, b"\0")
        return
    if kind == KcfgType.CHAR and size == 1:
        buf[off] = value & 0xFF
        return
    fmt = {1: "b", 2: "h", 4: "i", 8: "q"}.get(size)
    if fmt is None:
        raise einval(f"extern (kcfg) '{name}': unsupported size {size}")
    lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else \
        (0, (1 << (8 * size)) - 1)
    if not lo <= value <= hi:
        raise LoaderError(errno.ERANGE, f"extern (kcfg) '{name}': value {value} is out of "
                          f"range for {size}-byte {'signed' if signed else 'unsigned'} int")
    struct.pack_into("<" + (fmt if signed else fmt.upper()), buf, off, value)


def _resolve_ksym(obj: BpfObjectSpec, ext: object, facts: KernelFacts) -> None:
    from pybpf.loader.model import ExternDesc

    assert isinstance(ext, ExternDesc)
    if ext.ksym_is_func or ext.ksym_type_id:
        if facts.btf is None:
            return
        kind = BtfFunc if ext.ksym_is_func else BtfVar
        ids = [i for i in facts.btf.find_all(ext.name) if isinstance(facts.btf.types[i], kind)]
        if not ids:
            if not ext.is_weak:
                raise LoaderError(errno.ESRCH, f"extern (func ksym) '{ext.name}': not found "
                                  "in kernel or module BTFs" if ext.ksym_is_func else
                                  f"extern (var ksym) '{ext.name}': not found in kernel BTF")
            return
        ext.kernel_btf_id = ids[0]
        ext.kernel_btf_obj_fd = 0
        ext.is_set = True
        return
    addr = facts.kallsyms.get(ext.name)
    if addr is not None:
        ext.ksym_addr = addr
        ext.is_set = True
