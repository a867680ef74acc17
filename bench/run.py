"""Run every benchmark of bench/ (``make bench``): each prints a markdown table of pybpf
against the live kernel measured in the same run. Missing ones are reported, not hidden.

Each benchmark runs as its own process, so one's state (JIT caches, maps) never skews
another's figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ["interp", "maps", "jit", "verifier"]


def main() -> int:
    here = Path(__file__).parent
    status = 0
    for name in BENCHES:
        path = here / f"{name}.py"
        print(f"\n## {name}\n", flush=True)
        if not path.exists():
            print(f"(bench/{name}.py is not there yet)")
            continue
        status |= subprocess.run([sys.executable, str(path)], check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
