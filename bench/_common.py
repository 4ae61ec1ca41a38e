"""Helpers shared by the bench scripts (not a test module: nothing here asserts).

Every figure a bench script prints comes with the machine, the date and the
load average, because the machines these run on are often shared."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ram_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


def machine() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, {ram_gib():.1f} GiB RAM, "
            f"Python {platform.python_version()}")


def versions() -> str:
    out = []
    for mod in ("tensorflow", "keras", "keras_tuner"):
        try:
            m = __import__(mod)
            out.append(f"{mod} {m.__version__}")
        except Exception:  # noqa: BLE001 - informational only
            pass
    return ", ".join(out)


def header(title: str, argv: list[str] | None = None) -> None:
    print(f"== {title}")
    print(f"date:    {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {machine()}")
    print(f"command: {' '.join(argv or sys.argv)}")
    print(f"load average at start: {load()}")
    sys.stdout.flush()


def rss_mb() -> float:
    """This process's resident set size (VmRSS) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cli(*args: str, log: str) -> tuple[int, str]:
    """`python -m tuner ARGS` in a subprocess, its output in `log`: (exit code, output)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "tuner", *args], cwd=REPO, env=env, stdout=f,
                           stderr=subprocess.STDOUT, text=True)
    with open(log) as f:
        return r.returncode, f.read()


def verdict(ok: bool | None, what: str) -> None:
    tag = "PASS" if ok else ("FAIL" if ok is not None else "N/A ")
    print(f"{tag}: {what}")
    sys.stdout.flush()


@contextmanager
def workdir(keep: bool = False, prefix: str = "flower-bench-"):
    d = tempfile.mkdtemp(prefix=prefix)
    try:
        yield d
    finally:
        if keep:
            print(f"(kept {d})")
        else:
            shutil.rmtree(d, ignore_errors=True)


def demo_data(data: str | None, tmp: str, sizes, scale: float, seed: int = 0) -> str:
    """--data ROOT as given, else procedural demo data generated under tmp."""
    if data:
        return data
    from tuner.demo import generate

    root = os.path.join(tmp, "demo")
    t0 = time.perf_counter()
    s = generate(root, sizes=tuple(sizes), scale=scale, seed=seed)
    print(f"demo data: {root} sizes {list(s.sizes)} scale {scale}: {s.counts} "
          f"in {time.perf_counter() - t0:.1f}s")
    return root


def table(rows: list[list[str]], head: list[str]) -> str:
    cols = [head] + rows
    w = [max(len(str(r[i])) for r in cols) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows])


def run(main) -> None:
    """Run a benchmark's main: a measurement, not a test, so a failure is
    reported as its verdict and the exit code stays 0."""
    try:
        main()
    except Exception as e:
        import traceback

        traceback.print_exc()
        verdict(None, f"benchmark did not finish: {e}")
    sys.exit(0)
