"""Testing support: the live-kernel oracle, the conformance suite, shared test data."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path | None:
    """The project's ``shared/`` directory (conformance files, verifier corpus), if present.

    Looked up in ``$PYBPF_SHARED``, then beside the repository checkout (``../shared``),
    then beside the current directory. Test data is read from there, never copied.
    """
    candidates = []
    if os.environ.get("PYBPF_SHARED"):
        candidates.append(Path(os.environ["PYBPF_SHARED"]))
    repo = Path(__file__).resolve().parents[3]
    candidates += [repo.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in candidates:
        if (c / "conformance").is_dir() or (c / "verifier").is_dir():
            return c
    return None
