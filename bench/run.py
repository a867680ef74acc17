"""Run every benchmark of bench/ and print their markdown tables (``make bench``).

Each benchmark is a script with a ``main(argv) -> int`` that prints a markdown table of
pybpf against the live kernel measured in the same run. Missing ones (a tier not built
yet) are reported, not hidden.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHES = ["interp", "maps", "jit"]


def main() -> int:
    here = Path(__file__).parent
    status = 0
    for name in BENCHES:
        path = here / f"{name}.py"
        print(f"\n## {name}\n")
        if not path.exists():
            print(f"(bench/{name}.py is not there yet)")
            continue
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rc = module.main([])
        status |= rc or 0
    return status


if __name__ == "__main__":
    sys.exit(main())
