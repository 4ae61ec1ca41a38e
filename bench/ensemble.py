"""Does `best --export --ensemble K` (and --tta) beat the best single trial,
measured honestly? A demo search of at least 8 trials (or --project), then
exports with --ensemble 1, 3 and 5 and with --tta 2. Every figure is
cross-fitted: the choice is made on one half of the val split and scored on
the other, then the roles swap (see tuner.results.ensemble.cross_fitted).

    python bench/ensemble.py [--project DIR | --data ROOT] [--trials 8] [--epochs 8] [--seed 1]

Without --project the search runs the `demo` space without its early
termination (members stopped at the first rung would all be weak), every
trial for --epochs epochs. Goal: the ensemble of 3 at least 0.02 above the
best single trial.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, cli, demo_data, header, load, run, table, verdict, workdir  # noqa: E402


def export(project: str, tmp: str, name: str, *flags: str) -> dict:
    out = os.path.join(tmp, f"export-{name}")
    t0 = time.monotonic()
    rc, text = cli("best", "--project", project, "--export", out, *flags, log=os.path.join(tmp, f"{name}.log"))
    if rc != 0:
        raise RuntimeError(f"export {name} failed: {text.strip().splitlines()[-1:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    metrics["wall"] = time.monotonic() - t0
    return metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", help="an existing project with at least 5 finished trials (skips the search)")
    p.add_argument("--data", help="data root for the search (default: generate the demo data)")
    p.add_argument("--trials", type=int, default=8, help="trials of the search (default 8)")
    p.add_argument("--epochs", type=int, default=8, help="epochs of each trial (default 8)")
    p.add_argument("--seed", type=int, default=1, help="seed of the search (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the project, exports and logs")
    args = p.parse_args()
    header("ensemble: greedy ensembles and test-time augmentation against the best single trial")
    import yaml

    from tuner.spaces import load_space

    with workdir(keep=args.keep) as tmp:
        project = args.project
        if not project:
            space = load_space("demo")
            root = demo_data(args.data, tmp, space.params["image_size"].possible(), 0.1)
            doc = yaml.safe_load(space.text)
            doc.pop("early_terminate", None)
            path = os.path.join(tmp, "space.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(doc, f)
            project = os.path.join(tmp, "proj")
            t0, before = time.monotonic(), load()
            rc, text = cli("search", "--plain", "--space", path, "--data", root, "--project", project,
                           "--max-trials", str(args.trials), "--epochs", str(args.epochs), "--seed", str(args.seed),
                           log=os.path.join(tmp, "search.log"))
            if rc != 0:
                raise RuntimeError(f"search failed: {text.strip().splitlines()[-1:]}")
            print(f"search: {args.trials} trials x {args.epochs} epochs in {time.monotonic() - t0:.0f}s "
                  f"(load {before} -> {load()})", flush=True)
        runs = {name: export(project, tmp, name, *flags) for name, flags in (
            ("ensemble-1", ()), ("ensemble-3", ("--ensemble", "3")), ("ensemble-5", ("--ensemble", "5")),
            ("tta-2", ("--tta", "2")))}
        single = runs["ensemble-3"]["ensemble"]["cross_fitted"]["best_single_macro_f1"]
        rows = [["best single trial (ensemble 1)", f"{single:.4f}", "+0.0000", f"{runs['ensemble-1']['macro_f1']:.4f}",
                 "exported"]]
        for k in (3, 5):
            e = runs[f"ensemble-{k}"]["ensemble"]
            fit = e["cross_fitted"]
            members = ", ".join(f"{m['trial']}:{m['weight']:.2f}" for m in e["members"])
            rows.append([f"ensemble of up to {k}", f"{fit['ensemble_macro_f1']:.4f}", f"{fit['gain']:+.4f}",
                         f"{runs[f'ensemble-{k}']['macro_f1']:.4f}",
                         f"{'exported' if e['kept'] else 'not kept'} ({members})"])
        tta = runs["tta-2"]["tta"]
        halves = tta["halves"]
        plain = sum(h["plain_macro_f1"] for h in halves) / 2
        with_tta = sum(h["tta_macro_f1"] for h in halves) / 2
        rows.append(["TTA over 2 views (best single)", f"{with_tta:.4f}", f"{with_tta - plain:+.4f}",
                     f"{runs['tta-2']['macro_f1']:.4f}", "kept" if tta["kept"] else "not kept"])
        print(table(rows, ["export", "held-out macro F1", "gain", "whole-val macro F1 (seen)", "decision"]))
        print("held-out: each half of val scored by the choice made on the other half, averaged; for TTA the mean "
              "of its two halves against the same model without it. Whole-val: the exported file over every val "
              "image, including those it was chosen on.")
        os.makedirs(os.path.join(REPO, "bench", "out"), exist_ok=True)
        with open(os.path.join(REPO, "bench", "out", "ensemble.json"), "w") as f:
            json.dump({"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "trials": args.trials,
                       "epochs": args.epochs, "seed": args.seed, "runs": runs}, f, indent=1)
        gain3 = runs["ensemble-3"]["ensemble"]["cross_fitted"]["gain"]
        verdict(gain3 >= 0.02, f"ensemble of 3 {gain3:+.4f} over the best single trial (goal +0.02)")


if __name__ == "__main__":
    run(main)
