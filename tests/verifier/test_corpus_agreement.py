"""The shared 6.18-labelled corpus: verdict and first-error-message agreement targets."""

from __future__ import annotations

import pytest

from pybpf.verifier import corpus

SLOW = {809, 810}  # 40k / 1M processed instructions: covered by tools/verifier_agreement.py


@pytest.fixture(scope="module")
def outcomes() -> list[corpus.Outcome]:
    if not corpus.DEFAULT_PATH.exists():
        pytest.skip(f"shared corpus not found at {corpus.DEFAULT_PATH}")
    cases = [c for c in corpus.load() if c["index"] not in SLOW]
    return [corpus.run_case(c) for c in cases]


def test_verdict_agreement(outcomes: list[corpus.Outcome]) -> None:
    labelled = [o for o in outcomes if o.labelled]
    ok = sum(o.verdict_ok for o in labelled)
    assert ok / len(labelled) >= 0.98, f"verdict {ok}/{len(labelled)}"


def test_message_agreement(outcomes: list[corpus.Outcome]) -> None:
    rejected = [o for o in outcomes if o.labelled and not o.kernel_accepted]
    ok = sum(bool(o.message_ok) for o in rejected)
    assert ok / len(rejected) >= 0.90, f"message {ok}/{len(rejected)}"
