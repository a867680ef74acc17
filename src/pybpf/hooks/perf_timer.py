"""A software ``cpu-clock`` perf event that runs PERF_EVENT programs periodically.

``timer = kernel.perf_timer(freq=99)``; ``timer.attach(prog)``; then either
``timer.start()`` (a background thread firing ``freq`` times a second on each CPU in
``cpus``) or, for tests, ``timer.tick(n)`` — ``n`` deterministic samples. Each sample runs the
programs with a ``struct bpf_perf_event_data`` ctx: ``regs`` (the sampled registers — the
Python thread has none, so ``ip`` is a fixed pseudo address and the rest zero),
``sample_period`` (ns per sample: ``1e9 / freq``, as cpu-clock counts ns) and ``addr`` 0.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pybpf.hooks.attachments import close_link, hook_link, run_link
from pybpf.runtime.memory import REGISTRY
from pybpf.uapi import bpf_perf_event_data

PROG_TYPE_PERF_EVENT = 7


class PerfTimer:
    def __init__(self, kernel: Any, freq: int = 99, *, cpus: tuple[int, ...] = (0,)) -> None:
        if freq <= 0:
            raise ValueError("freq must be positive")
        self.kernel = kernel
        self.freq = freq
        self.cpus = cpus
        self.links: list[Any] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def sample_period(self) -> int:
        return 1_000_000_000 // self.freq

    def attach(self, prog: Any) -> Any:
        return hook_link(self.kernel, self, prog, (PROG_TYPE_PERF_EVENT,))

    def detach(self, link: Any) -> None:
        close_link(self.kernel, link)

    def register(self, link: Any) -> None:
        with self._lock:
            self.links.append(link)

    def unregister(self, link: Any) -> None:
        with self._lock:
            if link in self.links:
                self.links.remove(link)

    def tick(self, n: int = 1) -> list[int]:
        """Take ``n`` samples on every CPU now; the programs' return values."""
        rets: list[int] = []
        data = bpf_perf_event_data()
        data.sample_period = self.sample_period
        data.regs.ip = 0xFFFFFFFF81001000
        region = REGISTRY.wrap(data, "perf_event sample", writable=False)
        try:
            for _ in range(n):
                for cpu in self.cpus:
                    self.samples += 1
                    for link in list(self.links):
                        r0 = run_link(self.kernel, link, region.start, cpu)
                        if r0 is not None:
                            rets.append(r0)
        finally:
            REGISTRY.remove(region)
        return rets

    def start(self) -> None:
        """Sample in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            period = 1.0 / self.freq
            nxt = time.monotonic()
            while not self._stop.is_set():
                self.tick(1)
                nxt += period
                self._stop.wait(max(0.0, nxt - time.monotonic()))

        self._thread = threading.Thread(target=loop, name="pybpf-perf-timer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> PerfTimer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
