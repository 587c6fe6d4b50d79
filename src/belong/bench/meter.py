"""What a job costs the machine, counted over this process **and all its descendants** (a local Ray cluster's GCS,
raylet and worker processes, the forks of an in-process job): wall time, CPU seconds, the peak of the summed
resident memory (RSS, and PSS, which shares each shared page among the processes mapping it: the object store's
pages count once), and the load average before and after.

The descendants are sampled every ``interval`` seconds (a process's CPU after its last sample is missed: at most
``interval`` CPU-seconds per short-lived process); this process's own CPU is read exactly."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psutil


def _memory_kb(pid: int) -> tuple[int, int]:
    """``(Rss, Pss)`` of a process in kB, from ``/proc/PID/smaps_rollup`` (0, 0 when it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


class TreeMeter:
    """``with TreeMeter() as m: job()`` then ``m.figures()``: wall, CPU and peak memory of the process tree."""

    def __init__(self, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.interval = interval
        self.me = psutil.Process()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> its CPU seconds when last seen
        self._base: dict[tuple[int, float], float] = {}  # descendants already running at the start
        self.peak_rss_kb = self.peak_pss_kb = 0
        self.processes_peak = 0
        self.samples = 0

    def _sample(self) -> dict[tuple[int, float], float]:
        seen: dict[tuple[int, float], float] = {}
        rss = pss = 0
        procs = [self.me]
        try:
            procs += self.me.children(recursive=True)
        except psutil.Error:
            pass
        for proc in procs:
            try:
                if proc.pid != self.me.pid:
                    t = proc.cpu_times()
                    seen[(proc.pid, proc.create_time())] = t.user + t.system
            except psutil.Error:
                continue
            r, p = _memory_kb(proc.pid)
            rss += r
            pss += p
        with self._lock:
            self._cpu.update(seen)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self.processes_peak = max(self.processes_peak, len(procs))
            self.samples += 1
        return seen

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> TreeMeter:
        self.load_start = [round(x, 2) for x in os.getloadavg()]
        self._base = self._sample()
        self._cpu.clear()
        self._own0 = time.process_time()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="tree-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self._t0
        own = time.process_time() - self._own0
        others = sum(cpu - self._base.get(key, 0.0) for key, cpu in self._cpu.items())
        self.cpu_own = own
        self.cpu_descendants = max(0.0, others)
        self.load_end = [round(x, 2) for x in os.getloadavg()]

    def figures(self) -> dict[str, Any]:
        """The job's figures (after the ``with`` block)."""
        cpu = self.cpu_own + self.cpu_descendants
        return {"wall_seconds": round(self.wall, 3), "cpu_seconds": round(cpu, 2),
                "cpu_seconds_driver": round(self.cpu_own, 2),
                "cpu_seconds_other_processes": round(self.cpu_descendants, 2),
                "cores_busy": round(cpu / self.wall, 2) if self.wall > 0 else None,
                "peak_rss_sum_gb": round(self.peak_rss_kb * 1024 / 1e9, 3),
                "peak_pss_sum_gb": round(self.peak_pss_kb * 1024 / 1e9, 3),
                "processes_peak": self.processes_peak,
                "load_average_start": self.load_start, "load_average_end": self.load_end}
