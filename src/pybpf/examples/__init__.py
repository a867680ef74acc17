"""Example programs shipped with pybpf (used by ``pybpf demo`` and the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXAMPLES_DIR = Path(__file__).parent


@dataclass(frozen=True)
class AsmExample:
    """An assembly example: its text and the header facts (``# mem:``, ``# expect:``)."""

    name: str
    path: Path
    description: str
    text: str
    mem: bytes
    expect: int | None


def asm_examples(directory: Path | None = None) -> list[AsmExample]:
    """The shipped assembly examples, sorted by name."""
    out = []
    for path in sorted((directory or EXAMPLES_DIR / "asm").glob("*.s")):
        text = path.read_text()
        comments = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
        mem = b""
        expect = None
        description = ""
        for c in comments:
            if c.startswith("mem:"):
                mem = bytes.fromhex(c[4:].replace(" ", ""))
            elif c.startswith("expect:"):
                expect = int(c[7:].strip(), 0)
            elif not description:
                description = c
        out.append(AsmExample(path.stem, path, description, text, mem, expect))
    return out
