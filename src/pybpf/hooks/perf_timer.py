"""A software ``cpu-clock`` perf event that runs PERF_EVENT programs periodically.

``timer = kernel.perf_timer(freq=99)``; ``timer.attach(prog)``; then either
``timer.start()`` (a background thread firing ``freq`` times a second on each CPU in
``cpus``) or, for tests, ``timer.tick(n)`` — ``n`` deterministic samples. Each sample shows
the programs ``struct bpf_perf_event_data``: ``regs`` (the sampled registers — the Python
thread has none, so ``ip`` is a fixed pseudo address and the rest zero unless the host
passes ``regs=``), ``sample_period`` (ns per sample: ``1e9 / freq``, as cpu-clock counts
ns) and ``addr`` (0 unless the host passes ``addr=``).

What the programs run on is what the kernel hands them (``perf_event_output`` →
``bpf_overflow_handler``): a ``struct bpf_perf_event_data_kern`` {``regs``, ``data``,
``event``} pointing at a ``pt_regs`` and a ``perf_sample_data`` laid out at Linux 6.18's
offsets (:class:`PerfSample`). The verifier rewrote every ctx read to go through those
pointers (``PerfEvent.convert_ctx_access``), so the xlated program is the kernel's.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pybpf.hooks.attachments import close_link, hook_link, run_link
from pybpf.runtime.memory import REGISTRY, Region
from pybpf.uapi.kernel_structs import KSTRUCTS

PROG_TYPE_PERF_EVENT = 7
#: where the sampled "instruction pointer" of a Python thread points (kernel text-like)
SAMPLE_IP = 0xFFFFFFFF81001000
_U64 = 2**64 - 1


class PerfSample:
    """One sample's native objects: ``bpf_perf_event_data_kern`` (the ctx address the
    programs get), the ``pt_regs`` and the ``perf_sample_data`` it points to.

    ``regs`` maps ``pt_regs`` member names (``ip``, ``sp``, ``di``…) to values. All three
    are read-only to programs, as in the kernel. :meth:`close` unregisters them.
    """

    def __init__(self, period: int, addr: int = 0, regs: dict[str, int] | None = None) -> None:
        kern, sample, ptregs = (KSTRUCTS["bpf_perf_event_data_kern"],
                                KSTRUCTS["perf_sample_data"], KSTRUCTS["pt_regs"])
        self.regions: list[Region] = []
        self.regs = self._alloc(ptregs.size, "perf_event pt_regs")
        self.data = self._alloc(sample.size, "perf_event perf_sample_data")
        self.kern = self._alloc(kern.size, "perf_event bpf_perf_event_data_kern")
        for name, value in {"ip": SAMPLE_IP, **(regs or {})}.items():
            m = ptregs.members.get(name)
            if m is None or m.size != 8:
                self.close()
                raise ValueError(f"pt_regs has no 8-byte register {name!r}")
            self._put(self.regs, m.offset, value)
        self._put(self.data, sample.off("period"), period)
        self._put(self.data, sample.off("addr"), addr)
        self._put(self.kern, kern.off("regs"), self.regs.start)
        self._put(self.kern, kern.off("data"), self.data.start)
        # ``event`` stays NULL: no helper pybpf offers reads the perf_event behind it

    def _alloc(self, size: int, name: str) -> Region:
        region = REGISTRY.alloc(size, name, writable=False)
        self.regions.append(region)
        return region

    @staticmethod
    def _put(region: Region, off: int, value: int) -> None:
        region.mv[off:off + 8] = (int(value) & _U64).to_bytes(8, "little")

    @property
    def ctx_addr(self) -> int:
        return self.kern.start

    def close(self) -> None:
        for region in self.regions:
            REGISTRY.remove(region)
        self.regions.clear()


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

    def tick(self, n: int = 1, *, addr: int = 0,
             regs: dict[str, int] | None = None) -> list[int]:
        """Take ``n`` samples on every CPU now; the programs' return values. ``addr`` and
        ``regs`` (``pt_regs`` member -> value) let a host say what was sampled."""
        rets: list[int] = []
        sample = PerfSample(self.sample_period, addr, regs)
        try:
            for _ in range(n):
                for cpu in self.cpus:
                    self.samples += 1
                    for link in list(self.links):
                        r0 = run_link(self.kernel, link, sample.ctx_addr, cpu)
                        if r0 is not None:
                            rets.append(r0)
        finally:
            sample.close()
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
