"""The verifier: Linux 6.18's verdicts, messages and logs (entry point: :func:`bpf_check`)."""

from pybpf.verifier.api import VerifierInput, VerifierResult, bpf_check

__all__ = ["VerifierInput", "VerifierResult", "bpf_check"]
