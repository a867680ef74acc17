"""Execution: native memory, the checked interpreter and (later) the JIT."""
