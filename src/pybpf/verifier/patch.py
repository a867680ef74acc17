"""Rewriting a verified program in place: the kernel's ``bpf_patch_insn_data``.

Every post-verification pass (dead-code removal, ``convert_ctx_accesses``,
``do_misc_fixups``…) replaces one instruction by a sequence or removes a range. What must
stay consistent when the program grows or shrinks is what the kernel keeps consistent:

- jump offsets and bpf-to-bpf call immediates that cross the patched spot
  (``bpf_adj_branches``; a jump *to* the patched instruction lands on the first new one);
- ``ld_imm64`` ``BPF_PSEUDO_FUNC`` immediates (callback addresses are relative too);
- subprogram start indices (``adjust_subprog_starts``);
- line-info ``insn_off`` s (``bpf_adj_linfo``), so ``prog dump xlated linum`` and the
  jited line table still point at the right source lines;
- per-instruction aux data: the original instruction's aux moves to the *last*
  instruction of its replacement (``adjust_insn_aux_data``), the new ones before it get
  fresh dicts marked ``seen`` like the original.

The kernel refuses a patch whose jump offsets would overflow 16 bits with
``insn %d cannot be patched due to 16-bit range``; :class:`PatchError` carries that.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

from pybpf.isa.insn import Insn

BPF_JMP, BPF_JMP32 = 0x05, 0x06
BPF_CALL, BPF_EXIT, BPF_JA = 0x80, 0x90, 0x00
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_FUNC = 4
LD_IMM64 = 0x18
S16_MIN, S16_MAX = -(1 << 15), (1 << 15) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1


class PatchError(Exception):
    """A rewrite the kernel would refuse (``errno`` + the log line it prints)."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err
        self.message = message


def _is_pseudo_func(ins: Insn) -> bool:
    return ins.code == LD_IMM64 and ins.src == BPF_PSEUDO_FUNC


def _adjusted(value: int, curr: int, pos: int, end_old: int, end_new: int) -> int:
    """``bpf_adj_delta_to_off``/``_imm``: move a relative target that crosses the patch."""
    delta = end_new - end_old
    if curr < pos and curr + value + 1 >= end_old:
        return value + delta
    if curr >= end_new and curr + value + 1 < end_new:
        return value - delta
    return value


class ProgPatcher:
    """A program under rewrite plus everything indexed by instruction.

    ``insns`` is the slot list (``ld_imm64`` = two slots, as everywhere in pybpf);
    ``aux`` the verifier's per-slot dicts; ``subprog_starts`` the subprogram start indices
    (the fake exit subprog included when the caller has one); ``linfo_offs`` the
    ``insn_off`` of each line-info record, sorted.
    """

    def __init__(self, insns: Sequence[Insn], aux: Sequence[dict[str, Any]] | None = None,
                 subprog_starts: Sequence[int] = (0,), linfo_offs: Sequence[int] = (),
                 orig_idx: Sequence[int] | None = None) -> None:
        self.insns: list[Insn] = list(insns)
        self.aux: list[dict[str, Any]] = (
            [dict(a) for a in aux] if aux is not None else [{} for _ in self.insns])
        if len(self.aux) < len(self.insns):
            self.aux += [{} for _ in range(len(self.insns) - len(self.aux))]
        for i, a in enumerate(self.aux):
            a.setdefault("orig_idx", orig_idx[i] if orig_idx is not None else i)
        self.subprog_starts: list[int] = list(subprog_starts)
        self.linfo_offs: list[int] = list(linfo_offs)
        # which original subprograms / line-info records are still there (removal drops
        # whole subprograms and the line info of removed instructions, as the kernel does)
        self.subprog_ids: list[int] = list(range(len(self.subprog_starts)))
        self.linfo_ids: list[int] = list(range(len(self.linfo_offs)))

    def __len__(self) -> int:
        return len(self.insns)

    # ----------------------------------------------------------------- patching

    def patch(self, off: int, patch: Sequence[Insn]) -> None:
        """Replace the slot at ``off`` by ``patch`` (``bpf_patch_insn_data``)."""
        from pybpf.verifier.zext import insn_has_def32

        n = len(patch)
        if n == 0:
            raise ValueError("a patch has at least one instruction")
        # adjust_insn_aux_data: whatever sits at the end of the patch (the original, as a
        # rule) and every new instruction zero-extend conservatively if they define 32 bits
        self.aux[off]["zext_dst"] = insn_has_def32(patch[-1])
        if n == 1:
            self.insns[off] = patch[0]
            return
        if len(self.insns) + n - 1 > S16_MAX:  # the kernel probes before it commits
            self._adj_branches(off, off + 1, off + n, probe=True)
        old_aux = self.aux[off]
        self.insns[off:off + 1] = list(patch)
        fresh = [{"seen": old_aux.get("seen", True), "orig_idx": old_aux.get("orig_idx", off),
                  "zext_dst": insn_has_def32(patch[k])} for k in range(n - 1)]
        self.aux[off:off] = fresh  # old aux now sits on the last new slot
        self._adj_branches(off, off + 1, off + n, probe=False)
        delta = n - 1
        self.subprog_starts = [s + delta if s > off else s for s in self.subprog_starts]
        for i, lo in enumerate(self.linfo_offs):  # bpf_adj_linfo: strictly after `off`
            if lo > off:
                self.linfo_offs[i] = lo + delta

    def adjust_jmp_off(self, tgt_idx: int, delta: int) -> None:
        """``adjust_jmp_off``: jumps that target ``tgt_idx`` skip ``delta`` more slots.

        After a prologue is patched in front of instruction 0, a jump back to the program
        start must land on the original first instruction, not re-run the prologue.
        """
        for i, ins in enumerate(self.insns):
            if tgt_idx <= i < tgt_idx + delta:
                continue
            cls, op = ins.code & 0x07, ins.code & 0xF0
            if cls not in (BPF_JMP, BPF_JMP32) or op in (BPF_CALL, BPF_EXIT):
                continue
            if ins.code == (BPF_JMP32 | BPF_JA):
                if i + 1 + ins.imm == tgt_idx:
                    self._set(i, i, ins, "imm", ins.imm + delta, S32_MIN, S32_MAX, False)
            elif i + 1 + ins.off == tgt_idx:
                self._set(i, i, ins, "off", ins.off + delta, S16_MIN, S16_MAX, False)

    def _adj_branches(self, pos: int, end_old: int, end_new: int, *, probe: bool) -> None:
        """``bpf_adj_branches`` over the current (already patched, unless probing) image.

        In the probing pass the image is still the unpatched one: indices past the patch
        are virtually shifted, which is what the kernel checks before committing.
        """
        delta = end_new - end_old
        for idx, ins in enumerate(self.insns):
            if probe:
                if idx == pos:
                    continue
                curr = idx + delta if idx > pos else idx
            else:
                curr = idx  # the patchlet's own jumps never cross its bounds: unchanged
            if _is_pseudo_func(ins):
                new = _adjusted(ins.imm, curr, pos, end_old, end_new)
                self._set(pos, idx, ins, "imm", new, S32_MIN, S32_MAX, probe)
                continue
            cls = ins.code & 0x07
            op = ins.code & 0xF0
            if cls not in (BPF_JMP, BPF_JMP32) or op == BPF_EXIT:
                continue
            if op == BPF_CALL:
                if ins.src != BPF_PSEUDO_CALL:
                    continue
                new = _adjusted(ins.imm, curr, pos, end_old, end_new)
                self._set(pos, idx, ins, "imm", new, S32_MIN, S32_MAX, probe)
            elif ins.code == (BPF_JMP32 | BPF_JA):
                new = _adjusted(ins.imm, curr, pos, end_old, end_new)
                self._set(pos, idx, ins, "imm", new, S32_MIN, S32_MAX, probe)
            else:
                new = _adjusted(ins.off, curr, pos, end_old, end_new)
                self._set(pos, idx, ins, "off", new, S16_MIN, S16_MAX, probe)

    def _set(self, pos: int, idx: int, ins: Insn, field: str, value: int, lo: int, hi: int,
             probe: bool) -> None:
        if not lo <= value <= hi:
            orig = self.aux[pos].get("orig_idx", pos)
            raise PatchError(errno.ERANGE, f"insn {orig} cannot be patched due to 16-bit range\n")
        if not probe and getattr(ins, field) != value:
            self.insns[idx] = ins._replace(**{field: value})

    # ----------------------------------------------------------------- removing

    def remove(self, off: int, cnt: int) -> None:
        """Delete ``cnt`` slots from ``off`` (``verifier_remove_insns``).

        Jumps across the hole shrink (``bpf_adj_branches`` with a negative delta; a jump
        into the hole lands on what follows it), subprogram starts inside the hole move to
        ``off`` (the instruction after the hole) and subprograms removed whole disappear
        (``adjust_subprog_starts_after_remove``), aux data goes with its instruction.
        Line info (``bpf_adj_linfo_after_remove``): records of removed instructions go,
        except that the first live instruction after the hole inherits the last removed
        record when it has none of its own; records after the hole move back.
        """
        if cnt <= 0:
            return
        if off < 0 or off + cnt > len(self.insns):
            raise ValueError(f"remove({off}, {cnt}) outside a program of {len(self.insns)}")
        end = off + cnt
        del self.insns[off:end]
        del self.aux[off:end]
        self._adj_branches(off, end, off, probe=False)
        self._remove_subprogs(off, end)
        self._remove_linfo(off, end)

    def _remove_subprogs(self, off: int, end: int) -> None:
        """``adjust_subprog_starts_after_remove``: subprograms starting inside the hole
        vanish, unless the hole only cut the front of one (which then starts at ``off``);
        the last entry is the fake exit subprogram."""
        cnt = end - off
        starts, ids = self.subprog_starts, self.subprog_ids
        n = len(starts) - 1  # real subprograms
        i = next((k for k in range(n) if starts[k] >= off), n)
        j = next((k for k in range(i, n) if starts[k] >= end), n)
        if starts[j] != end:
            j -= 1  # only the front of the previous subprogram goes
        if j > i:
            del starts[i:j]
            del ids[i:j]
        elif i < len(starts) and starts[i] == off:
            i += 1
        for k in range(i, len(starts)):
            starts[k] -= cnt

    def _remove_linfo(self, off: int, end: int) -> None:
        """``bpf_adj_linfo_after_remove``."""
        cnt = end - off
        offs, ids = self.linfo_offs, self.linfo_ids
        first = next((i for i, lo in enumerate(offs) if lo >= off), len(offs))
        i = first
        while i < len(offs) and offs[i] < end:
            i += 1
        removed = i - first
        if len(self.insns) != off and removed and (i == len(offs) or offs[i] != end):
            removed -= 1  # the first live insn inherits the last removed record
            i -= 1
            offs[i] = end
        del offs[first:first + removed]
        del ids[first:first + removed]
        self.linfo_offs = [lo - cnt if k >= first else lo for k, lo in enumerate(offs)]
        self.linfo_ids = ids
