"""The README's pictures, from a real project: `status` as rich draws it on a
terminal (SVG, by rich's own export) and TensorBoard's HParams dashboard
(PNG, by headless Chromium: `apt-get install chromium`).

    .venv/bin/python -m tuner search --space demo --max-time 4m --project /tmp/shots/demo
    .venv/bin/python docs/screenshots.py /tmp/shots/demo
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def status_svg(project: str, out: str) -> None:
    from rich.console import Console

    from tuner.results.trials import best_id, load_trials, print_table, status_row

    meta, trials = load_trials(project)
    console = Console(record=True, width=150, force_terminal=True, color_system="truecolor")
    print_table([status_row(meta, t) for t in trials], f"runs/demo: {len(trials)} trial(s)", "table",
                best=best_id(meta, trials), console=console)
    console.save_svg(out, title="python -m tuner status --project runs/demo")


def hparams_png(project: str, out: str, port: int = 6123) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("no chromium: apt-get install chromium")
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", project, "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://localhost:{port}/", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1500,900", "--virtual-time-budget=20000", f"--screenshot={out}",
                        f"http://localhost:{port}/#hparams"], check=True, capture_output=True, timeout=180)
    finally:
        board.terminate()


if __name__ == "__main__":
    project = sys.argv[1]
    status_svg(project, os.path.join(HERE, "status.svg"))
    hparams_png(project, os.path.join(HERE, "hparams.png"))
    print("wrote docs/status.svg and docs/hparams.png")
