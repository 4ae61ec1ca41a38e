"""Search efficiency: best validation F1 reached per CPU-minute for random,
bayes and hyperband on the demo data, with the same space apart from the
method (the shipped `demo` space with --max-trials/--epochs/--steps-per-epoch
overrides).

Each method runs as its own `python -m tuner search` subprocess. While it runs,
its CPU time (user + system of all its threads, /proc/PID/stat) is sampled and
its project is read with `tuner.results.trials.load_trials`; each time a trial
finishes, (CPU-minutes so far, best-so-far val F1) is recorded. Random and
bayes run --budget-trials trials; hyperband (whose trial count follows from
max_epochs and its factor, not from --max-trials) is stopped with SIGTERM (a
clean stop at an epoch end) once it has used as much CPU as the larger of the
other two, so all three get about the same CPU budget.

Prints a table, writes a PNG of best-so-far F1 vs CPU-minutes (--plot).
There is no pass/fail goal; the line at the end names the most efficient method.

    .venv/bin/python bench/efficiency.py --budget-trials 3 --epochs 3     # ~10 min on 2 cores
    .venv/bin/python bench/efficiency.py --budget-trials 20 --epochs 6 --steps 20 --scale 0.1

Keras Tuner's bayes oracle samples its first max(3 x varying dimensions, 3)
trials at random (9 for the demo space), so bayes only differs from random
with a budget above that.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

METHODS = ("random", "bayes", "hyperband")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data root (default: generate demo data in a temp dir)")
    p.add_argument("--scale", type=float, default=0.05, help="demo data scale (default: 0.05)")
    p.add_argument("--space", default="demo", help="space name or file (default: demo, 64 px)")
    p.add_argument("--budget-trials", type=int, default=6, help="trials for random and bayes (default: 6)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per trial = hyperband's max_epochs (default: 4)")
    p.add_argument("--steps", type=int, default=10, help="steps per epoch (default: 10)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: random,bayes,hyperband)")
    p.add_argument("--hyperband-cpu-min", type=float,
                   help="CPU-minutes after which hyperband is stopped (default: the most the other methods used)")
    p.add_argument("--plot", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "efficiency.png"),
                   help="PNG to write (default: bench/out/efficiency.png); '' for none")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between samples (default: 0.5)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    return p.parse_args(argv)


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)


def run_method(method: str, args, root: str, tmp: str, cpu_cap_min: float | None) -> dict:
    from tuner.results.trials import load_trials

    project = os.path.join(tmp, f"proj-{method}")
    cmd = [sys.executable, "-m", "tuner", "search", "--space", args.space, "--data", root, "--project", project,
           "--method", method, "--max-trials", str(args.budget_trials), "--epochs", str(args.epochs),
           "--steps-per-epoch", str(args.steps), "--plain", "--strategy", "cpu"]
    print(f"[{method}] {' '.join(cmd[1:])}" + (f"  (stopped at {cpu_cap_min:.2f} CPU-min)" if cpu_cap_min else ""),
          flush=True)
    log = open(os.path.join(tmp, f"{method}.log"), "w")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    la0 = C.load()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=C.REPO,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seen: set[str] = set()
    points: list[dict] = []
    best = None
    cpu = 0.0
    stopped = False

    def scan():
        nonlocal best
        try:
            _, trials = load_trials(project)
        except Exception:  # noqa: BLE001 - project not created yet
            return
        for t in trials:
            if t.trial_id in seen or t.state not in ("completed", "failed"):
                continue
            seen.add(t.trial_id)
            if t.score is not None and (best is None or t.score > best):
                best = t.score
            points.append({"trial": t.trial_id, "state": t.state, "cpu_min": cpu / 60, "wall_s": time.monotonic() - t0,
                           "score": t.score, "best": best, "epochs": t.epochs_done})
            print(f"  [{method}] trial {t.trial_id} {t.state} ({t.epochs_done} epochs): val_f1 "
                  f"{t.score if t.score is not None else float('nan'):.4f}, best so far "
                  f"{best if best is not None else float('nan'):.4f} at {cpu / 60:.2f} CPU-min, "
                  f"{time.monotonic() - t0:.0f}s wall, load {C.load()}", flush=True)

    while proc.poll() is None:
        c = proc_cpu_seconds(proc.pid)
        if c is not None:
            cpu = c
        scan()
        if cpu_cap_min and not stopped and cpu / 60 >= cpu_cap_min:
            proc.send_signal(signal.SIGTERM)  # clean stop at the end of the current epoch
            stopped = True
        time.sleep(args.poll)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    cpu = total
    scan()  # trials finished after the last sample
    log.close()
    wall = time.monotonic() - t0
    print(f"[{method}] exit {proc.returncode}{' (SIGTERM: CPU budget reached)' if stopped else ''}; "
          f"{len(points)} trials; {total / 60:.2f} CPU-min, {wall:.0f}s wall; load at start {la0}, now {C.load()}",
          flush=True)
    if proc.returncode not in (0, 143):
        with open(os.path.join(tmp, f"{method}.log")) as f:
            print("".join(f.readlines()[-15:]))
    return {"method": method, "points": points, "cpu_min": total / 60, "wall_s": wall, "best": best,
            "stopped": stopped, "load": la0}


def best_at(points: list[dict], cpu_min: float) -> float | None:
    b = None
    for p in points:
        if p["cpu_min"] <= cpu_min + 1e-9 and p["best"] is not None:
            b = p["best"]
    return b


def plot(results: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot(111)
    for r in results:
        xs = [0.0] + [p["cpu_min"] for p in r["points"]] + [r["cpu_min"]]
        ys = [0.0] + [p["best"] or 0.0 for p in r["points"]]
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", label=f"{r['method']} ({len(r['points'])} trials)")
        ax.plot(xs[1:-1], ys[1:-1], "o", ms=4, color=ax.lines[-1].get_color())
    ax.set_xlabel("CPU-minutes (user + system, all threads)")
    ax.set_ylabel("best-so-far val macro F1")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    print(f"plot: {os.path.abspath(path)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    C.header("bench/efficiency.py: best val F1 per CPU-minute, random vs bayes vs hyperband")
    print(C.versions())
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = []
    with C.workdir(args.keep) as tmp:
        root = C.demo_data(args.data, tmp, (64,), args.scale)
        # hyperband last, so its CPU cap can be the others' largest use
        for m in sorted(methods, key=lambda m: m == "hyperband"):
            cap = None
            if m == "hyperband":
                cap = args.hyperband_cpu_min or max((r["cpu_min"] for r in results), default=None)
            results.append(run_method(m, args, root, tmp, cap))
    common = min(r["cpu_min"] for r in results)
    try:
        from tuner.spaces import load_space

        dims = len(load_space(args.space).varying)
        initial = max(3 * dims, 3)  # Keras Tuner's BayesianOptimizationOracle default num_initial_points
        if "bayes" in methods and args.budget_trials <= initial:
            print(f"note: the space varies {dims} dimensions, so Keras Tuner's bayes oracle draws its first "
                  f"{initial} trials at random; with --budget-trials {args.budget_trials} bayes is a random "
                  f"search (another random stream), not a model-guided one")
    except Exception:  # noqa: BLE001 - informational only
        pass
    print()
    print(f"space {args.space} with --max-trials {args.budget_trials} --epochs {args.epochs} "
          f"--steps-per-epoch {args.steps}; demo data scale {args.scale}")
    rows = []
    for r in results:
        b = r["best"]
        at = best_at(r["points"], common)
        rows.append([r["method"], str(len(r["points"])), str(sum(p["epochs"] for p in r["points"])),
                     f"{r['cpu_min']:.2f}", f"{r['wall_s'] / 60:.1f}", "-" if b is None else f"{b:.4f}",
                     "-" if b is None else f"{b / r['cpu_min']:.4f}", "-" if at is None else f"{at:.4f}",
                     r["load"] + (" (cut)" if r["stopped"] else "")])
    print(C.table(rows, ["method", "trials", "epochs", "CPU-min", "wall min", "best val F1", "F1 per CPU-min",
                         f"best F1 by {common:.2f} CPU-min", "load at start"]))
    if args.plot:
        plot(results, args.plot, f"{args.space}: {args.budget_trials} trials x {args.epochs} epochs x "
             f"{args.steps} steps; {C.cpu_model()} x{os.cpu_count()}")
    scored = [(best_at(r["points"], common) or 0.0, r["method"]) for r in results]
    top = max(scored)
    print(f"RESULT (no goal, a comparison): most F1 by the common budget of {common:.2f} CPU-min: {top[1]} ({top[0]:.4f}); "
              f"load now {C.load()}", flush=True)
    return 0


if __name__ == "__main__":
    C.run(main)
