#!/usr/bin/env python3
"""Run the shared verifier corpus through pybpf and print agreement with the 6.18 labels.

    .venv/bin/python tools/verifier_agreement.py [--list] [--only N,...] [--corpus PATH]

Prints ``verdict A/B, message C/D, retval E/F`` plus timing, and with ``--list`` every
disagreement (index, description, kernel's error line, ours).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pybpf.verifier import corpus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--list", action="store_true", help="print every disagreement")
    ap.add_argument("--only", default="", help="comma-separated case indices")
    ap.add_argument("--no-retval", action="store_true", help="skip the test_run comparison")
    args = ap.parse_args(argv)
    cases = corpus.load(args.corpus)
    if args.only:
        want = {int(x) for x in args.only.split(",")}
        cases = [c for c in cases if c["index"] in want]
    corpus_case_processed = {c["index"]: (c["kernel"] or {}).get("insn_processed") for c in cases}
    outs = []
    t0 = time.perf_counter()
    processed = 0
    for c in cases:
        try:
            o = corpus.run_case(c)
        except Exception as e:
            print(f"CRASH {c['index']} {c['descr']}: {type(e).__name__}: {e}")
            import traceback
            traceback.print_exc()
            continue
        outs.append(o)
        if o.result is not None:
            processed += o.result.extra.get("insn_processed", 0)
    dt = time.perf_counter() - t0
    rv_ok = rv_n = 0
    rv_bad: list[str] = []
    if not args.no_retval:
        for c in cases:
            try:
                r = corpus.run_retval(c)
            except Exception as e:  # report, keep going
                r = (False, f"{type(e).__name__}: {e}")
            if r is None:
                continue
            rv_n += 1
            rv_ok += r[0]
            if not r[0]:
                rv_bad.append(f"RETVAL {c['index']} [{c['descr']}] {r[1]}")
    labelled = [o for o in outs if o.labelled]
    rejected = [o for o in labelled if not o.kernel_accepted]
    v_ok = sum(o.verdict_ok for o in labelled)
    m_ok = sum(bool(o.message_ok) for o in rejected)
    e_ok = sum(bool(o.errno_ok) for o in rejected)
    stub = [o for o in labelled if o.stub_maps]
    # "processed N insns": the kernel's count for every labelled case vs ours (same verdict
    # only; a different verdict stops at a different place by definition).
    proc = [(o, corpus_case_processed[o.index]) for o in labelled
            if o.verdict_ok and corpus_case_processed.get(o.index) is not None and o.result is not None]
    p_ok = [o for o, k in proc if o.result is not None and o.result.extra.get("insn_processed") == k]
    print(f"verdict {v_ok}/{len(labelled)}, message {m_ok}/{len(rejected)} (rejected cases), "
          f"retval {rv_ok}/{rv_n} (map-free accepted cases), "
          f"cases with stand-in maps {len(stub)} (verdict {sum(o.verdict_ok for o in stub)}/{len(stub)})")
    print(f"processed insns equal {len(p_ok)}/{len(proc)} (same-verdict cases), "
          f"errno {e_ok}/{len(rejected)} (rejected cases)")
    print(f"time {dt:.2f}s for {len(outs)} cases, {processed} insns processed, "
          f"{processed / dt if dt else 0:.0f} insns/s")
    if args.list:
        for line in rv_bad:
            print(line)
        for o in labelled:
            if o.errno_ok is False and o.verdict_ok and o.message_ok:
                print(f"ERRNO {o.index} [{o.descr}] kernel={o.kernel_errno} ours={o.our_errno}: "
                      f"{o.kernel_error!r}")
            if not o.verdict_ok or o.message_ok is False:
                tag = "VERDICT" if not o.verdict_ok else "MESSAGE"
                print(f"{tag} {o.index} [{o.descr}] kernel={'acc' if o.kernel_accepted else 'rej'}:"
                      f" {o.kernel_error!r} ours={'acc' if o.accepted else 'rej'}: {o.our_error!r}")
        ok_idx = {o.index for o in p_ok}
        for o, k in proc:
            if o.index not in ok_idx and o.result is not None:
                print(f"PROCESSED {o.index} [{o.descr}] kernel={k} ours={o.result.extra.get('insn_processed')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
