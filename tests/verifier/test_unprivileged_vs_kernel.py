"""Unprivileged verification against the live 6.18 kernel: every map-free socket-filter
case of the shared corpus, loaded by a capability-less child in the kernel (the sysctl
``kernel.unprivileged_bpf_disabled`` is lowered to 0 for the duration and restored) and by
pybpf without CAP_BPF/CAP_PERFMON/CAP_NET_ADMIN. Verdicts must all agree — accepting what
6.18 refuses an unprivileged user would be a security hole — and so must first error
messages, errnos and whole level-2 logs (every scalar of an unprivileged check is precise
from the start: the ``P`` marks)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TOOL = Path(__file__).parents[2] / "tools" / "unpriv_agreement.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unpriv_agreement", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cases() -> tuple[ModuleType, list[Any]]:
    """The tool and its cases, or a visible skip (no root, no corpus)."""
    if os.geteuid() != 0 or not os.access("/proc/sys/kernel/unprivileged_bpf_disabled", os.W_OK):
        pytest.skip("needs root to lower kernel.unprivileged_bpf_disabled")
    tool = _tool()
    try:
        selected = tool.cases()
    except FileNotFoundError:
        selected = []
    if not selected:
        pytest.skip("shared verifier corpus not found")
    return tool, selected


def test_unprivileged_corpus_agrees_with_kernel(kernel: ModuleType) -> None:
    tool, selected = _cases()
    verdict, msg, errs, rejected, diffs = tool.compare(selected)
    assert verdict == len(selected), [d for d in diffs if d.startswith("VERDICT")]
    assert (msg, errs) == (rejected, rejected), diffs


def test_unprivileged_corpus_logs_equal_kernel(kernel: ModuleType) -> None:
    tool, selected = _cases()
    equal, diffs = tool.compare_logs(selected)
    assert equal == len(selected), diffs[:5]
