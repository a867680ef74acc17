"""Which program types may call which kfunc, measured on the live kernel.

For every FUNC vmlinux tags ``bpf_kfunc`` and every program type the live kernel loads
(without special privileges or attach targets), load ``r1..r5 = 0; call <kfunc>; r0 = 0;
exit`` and record whether the verifier answers "calling kernel function %s is not
allowed" (the kfunc is in no id set registered for that type) or gets further (it is).
The groups of identical answers are the id sets of ``src/pybpf/helpers/kfuncs.py``.

    sudo .venv/bin/python tools/kfunc_hooks_probe.py [--json out.json]

Prints ``name: [prog types...]`` per kfunc, then the groups.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pybpf.btf.raw import BtfDeclTag
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.testing import kernel as live

BPF_F_SLEEPABLE = 1 << 4


def load_attrs(btf) -> dict[int, dict[str, int]]:
    """Program type → the attributes it needs to load at all."""
    tp = next(t.id for t in btf.types if t.name == "btf_trace_sched_switch")
    plain = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16, 17, 21, 22, 23, 24)
    attrs: dict[int, dict[str, int]] = {t: {} for t in plain}
    attrs.update({
        18: {"expected_attach_type": 8},  # cgroup/sock_addr: BPF_CGROUP_INET4_CONNECT
        25: {"expected_attach_type": 21},  # cgroup/sockopt: BPF_CGROUP_GETSOCKOPT
        26: {"expected_attach_type": 23, "attach_btf_id": tp},  # tp_btf
        30: {"expected_attach_type": 36},  # sk_lookup
        31: {"prog_flags": BPF_F_SLEEPABLE},  # syscall programs must be sleepable
        32: {"expected_attach_type": 45},  # netfilter
    })
    return attrs


def probe() -> dict[str, list[int]]:
    btf = Kernel().vmlinux_btf.parsed()
    names = sorted({btf.types[t.type].name: t.type for t in btf.types
                    if isinstance(t, BtfDeclTag) and t.name == "bpf_kfunc"}.items())
    out: dict[str, list[int]] = {}
    for name, fid in names:
        allowed = []
        for prog_type, attrs in load_attrs(btf).items():
            prog = [Insn(0xB7, r) for r in range(1, 6)] + [Insn(0x85, 0, 2, 0, fid), Insn(0xB7), Insn(0x95)]
            res = live.prog_load(prog_type, encode(prog), log_level=1, log_size=1 << 16, **attrs)
            if res.fd >= 0:
                live.close(res.fd)
            lines = [ln for ln in res.log.splitlines() if ln.strip() and not ln.startswith("processed")]
            msg = lines[-1] if lines else ""
            if "calling kernel function" in msg and "is not allowed" in msg:
                continue
            if res.errno and not lines:  # the program type itself did not load
                continue
            allowed.append(prog_type)
        out[name] = allowed
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the result as JSON here")
    args = ap.parse_args()
    result = probe()
    for name, types in result.items():
        print(f"{name}: {types}")
    groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for name, types in result.items():
        groups[tuple(types)].append(name)
    for types_key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n{list(types_key)}: {len(members)} kfuncs\n  " + " ".join(members))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
