"""`python -m tuner`: a thin command line over the package's functions.

Nothing heavy is imported at module level, so `--help` answers at once;
every command's work is a function callable from Python."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tuner import __version__
from tuner.errors import TunerError
from tuner.results.trials import FORMATS

def parse_duration(text: str) -> float:
    """'2h45m', '90m', '1.5h', '30s' or plain seconds -> seconds (argparse's message on error)."""
    from tuner.duration import parse_duration as parse

    try:
        return parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {v}")
    return v


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 64,192, got {text!r}") from None
    if not sizes or any(s < 16 or s > 1024 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be between 16 and 1024")
    return sizes


class _Parser(argparse.ArgumentParser):
    """Usage errors end in one line and exit code 2, like every other bad input."""

    def error(self, message: str):  # pragma: no cover - exercised through the CLI tests
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _backend_flag(sp) -> None:
    sp.add_argument("--backend", choices=("auto", "tensorflow", "jax"), default=None,
                    help="Keras backend (default: auto = $KERAS_BACKEND, else JAX where it sees a TPU, TensorFlow "
                         "where it sees a GPU, on a CPU the faster one here)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m tuner", description=(
        "flower-tuner: Keras Tuner searches for flower classifiers on Kaggle's Petals to the Metal "
        "TFRecords, resumable mid-trial, on CPU, GPU or TPU."))
    p.add_argument("--version", action="version", version=f"flower-tuner {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("search", help="run or resume a search", description=(
        "Run a Keras Tuner search over a space file. Running the same command again resumes it, "
        "including an interrupted trial from its last finished epoch."))
    s.add_argument("--space", default="default", help="shipped space name (see `spaces`) or path to a .yaml file (default: default)")
    s.add_argument("--data", help="data root holding tfrecords-jpeg-SxS/ (local or gs://); default: $TUNER_DATA, "
                   "else the Kaggle input folder, else the demo data when the space says `data: demo`")
    s.add_argument("--project", help="project directory (default: runs/<space name>)")
    s.add_argument("--max-trials", type=_positive_int, help="number of trials (overrides the space's run_cap; may grow on resume)")
    s.add_argument("--epochs", type=_positive_int, help="epochs per trial (overrides the space)")
    s.add_argument("--steps-per-epoch", type=_positive_int, help="training steps per epoch (overrides the space)")
    s.add_argument("--method", choices=("tpe", "random", "bayes", "hyperband"), help="search method (overrides the space)")
    s.add_argument("--warm-start", metavar="OTHER_PROJECT", help="seed TPE's model with the finished trials of an "
                   "earlier search over the same varying dimensions (method tpe)")
    s.add_argument("--strategy", default="auto", choices=("auto", "tpu", "mirrored", "cpu"),
                   help="distribution strategy (default: auto = TPU, else several GPUs, else one GPU or CPU)")
    s.add_argument("--cpu-replicas", type=_positive_int, help="split the CPU into N logical devices (with --strategy mirrored; also $TUNER_CPU_REPLICAS)")
    s.add_argument("--max-time", type=parse_duration, help="the time budget, e.g. 2h45m: no trial starts that cannot reach its first "
                   "decision in the time left, the end goes to the best trials, and the last epoch is cut "
                   "at the step after which its validation would not fit, then validated and saved: "
                   "the command ends within it")
    s.add_argument("--weights", help="backbone weights for every trial: imagenet, none, or a local .h5 file (overrides the space)")
    s.add_argument("--seed", type=int, help="random seed (overrides the space)")
    s.add_argument("--overwrite", action="store_true", help="delete the project's earlier trials and start afresh")
    s.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    _backend_flag(s)
    dist = s.add_argument_group("several machines (Keras Tuner's chief/worker service; --project on shared storage)")
    dist.add_argument("--chief", metavar="HOST:PORT", help="serve the oracle on HOST:PORT and wait for workers")
    dist.add_argument("--connect", metavar="HOST:PORT", help="run trials as a worker of the chief at HOST:PORT")
    dist.add_argument("--worker-id", metavar="NAME", help="this worker's unique name (with --connect)")
    dist.add_argument("--lease", type=parse_duration, default=300.0,
                      help="chief: hand a trial to another worker when its worker has not reported for this "
                           "long (default 5m; keep it well above one epoch)")
    dist.add_argument("--token", help="the secret every call between the chief and its workers carries (default "
                      "$TUNER_TOKEN; a chief without one makes one, writes it to PROJECT/chief.token and prints "
                      "the line for its workers, which also read that file on shared storage)")
    dist.add_argument("--tls-cert", metavar="FILE", help="chief: serve over TLS with this certificate (PEM)")
    dist.add_argument("--tls-key", metavar="FILE", help="chief: the certificate's private key (PEM)")
    dist.add_argument("--tls-ca", metavar="FILE", help="worker: connect over TLS, trusting this certificate "
                      "(the chief's own, when self-signed)")
    dist.add_argument("--insecure", action="store_true", help="allow a chief on (or a worker to) an address "
                      "other than loopback without TLS: the token and results then travel in clear")

    sp = sub.add_parser("spaces", help="list the shipped search spaces", description=(
        "List the shipped search spaces, or print the space format as a JSON Schema for editors."))
    sp.add_argument("--schema", action="store_true",
                    help="print the JSON Schema of space files (also shipped as tuner/space.schema.json; point "
                         "an editor at it with `# yaml-language-server: $schema=PATH` on a space's first line)")

    d = sub.add_parser("demo-data", help="write the procedural demo flower dataset", description=(
        "Write a procedural 104-class flower dataset in Kaggle's exact layout and record format."))
    d.add_argument("--out", help="output folder (default: $TUNER_DEMO_DATA or ~/.cache/flower-tuner/demo)")
    d.add_argument("--sizes", type=_sizes, default=(64,), help="image sizes, comma-separated (default: 64)")
    d.add_argument("--scale", type=float, default=0.1, help="fraction of the real split sizes (default: 0.1)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    c = sub.add_parser("check", help="read a data root and report what the pipeline sees", description=(
        "Open a data root, count records per split from the file names, decode a batch and time the input pipeline."))
    c.add_argument("--data", help="data root (default: $TUNER_DATA, else the demo data)")
    c.add_argument("--image-size", type=_positive_int, default=64, help="image size to read at (default: 64)")
    c.add_argument("--batch", type=_positive_int, default=32, help="batch size (default: 32)")
    c.add_argument("--scan", action="store_true", help="also read every record to find corrupt files")
    _backend_flag(c)
    def project_flags(sp):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--project", help="project directory (default: runs/<space name>)")
        g.add_argument("--space", default="default", help="space name whose default project to read (default: default)")

    def format_flag(sp):
        sp.add_argument("--format", choices=FORMATS, default="auto",
                        help="auto (default): a table on a terminal, markdown otherwise; table, md, csv, or json "
                             "(typed values, for scripts)")

    st = sub.add_parser("status", help="every trial of a project in a table", description=(
        "Every trial: state (running, completed, failed with its reason, interrupted at epoch k, paused or "
        "stopped at a rung), the hyperparameters that vary, epochs run, val F1 and the epoch it was reached "
        "at, precision, recall and time."))
    project_flags(st)
    format_flag(st)
    st.add_argument("--watch", type=parse_duration, nargs="?", const=5.0, metavar="EVERY",
                    help="refresh the table in place every EVERY (default 5s) until Ctrl-C; reads files only, so "
                         "it also works on a worker's shared storage")

    b = sub.add_parser("best", help="the best trials; --export writes the best model, submission and plots",
                       description="The best trials as the original study's table, and where each lives.")
    project_flags(b)
    b.add_argument("--top", type=_positive_int, default=5, help="how many trials to show (default: 5)")
    format_flag(b)
    b.add_argument("--export", metavar="DIR", help="write the best trial's model.keras, SavedModel, metrics.json, "
                   "submission.csv, trials table, plots and report.md into DIR")
    b.add_argument("--data", help="data root for --export (default: the one the search used)")
    b.add_argument("--ensemble", type=_positive_int, default=1, metavar="K",
                   help="with --export: average up to K of the best trials (greedy selection on the val split, "
                        "kept only if it beats the best single trial on held-out halves; default 1: no ensemble)")
    b.add_argument("--tta", type=_positive_int, default=1, metavar="N",
                   help="with --export: average the predictions over N views of each image (the image, its "
                        "mirror, then small versions of the trial's augmentations), kept only if better on both "
                        "halves of the val split; 1 to 8 (default 1: none)")
    b.add_argument("--refit", action="store_true",
                   help="with --export: train the exported choice (each member of an ensemble) again from "
                        "scratch on train + val, with the search's learning rate epoch by epoch, and ship that "
                        "model (not scored: the metrics stay the search model's, exported beside it); "
                        "checkpointed every epoch, the same command continues it")
    b.add_argument("--refit-epochs", type=_positive_int, metavar="N",
                   help="with --refit: epochs to train (default: each trial's best epoch)")
    b.add_argument("--max-time", type=parse_duration, metavar="T",
                   help="with --refit: stop the refit cleanly at the first epoch end after T (e.g. 2h45m); "
                        "the same command continues it")
    _backend_flag(b)

    bd = sub.add_parser("board", help="TensorBoard on a project: every trial's curves and the HParams dashboard",
                        description="Start TensorBoard on a project: each trial is a run with its epoch metrics "
                                    "and its hyperparameters (HParams table, parallel coordinates, scatter).")
    project_flags(bd)
    bd.add_argument("--port", type=int, default=6006, help="port to serve on (default: 6006)")
    bd.add_argument("--host", default="localhost", help="address to bind (default: localhost; 0.0.0.0 for all)")

    pr = sub.add_parser("predict", help="a submission.csv from any exported model", description=(
        "Predict the test split of a data root with an exported model (model.keras or a SavedModel folder)."))
    pr.add_argument("--model", required=True, help="model.keras or model.export folder")
    pr.add_argument("--data", required=True, help="data root holding tfrecords-jpeg-SxS/test")
    pr.add_argument("--out", default="submission.csv", help="output CSV (default: submission.csv)")
    pr.add_argument("--batch", type=_positive_int, default=64, help="batch size (default: 64)")
    pr.add_argument("--tta", type=_positive_int, default=1, metavar="N",
                    help="average over N views of each image (1 to 8; default 1: none), as best --export --tta")
    _backend_flag(pr)
    return p


def _project(args) -> str:
    if args.project:
        return args.project
    from tuner.engine.project import default_project

    return default_project(args.space)


def _cmd_status(args) -> int:
    from tuner.results.trials import best_id, load_trials, print_table, rich_table, status_row, trial_record

    project = _project(args)

    def table():
        meta, trials = load_trials(project)
        rows = [status_row(meta, t) for t in trials]
        return rows, f"{project}: {len(trials)} trial(s)", best_id(meta, trials), trials

    if args.watch:
        import signal
        import time

        from rich.console import Console
        from rich.live import Live

        # Ctrl-C (SIGINT) ends the watch, as it stops a search (its stopper
        # sets its own handler), also where the process inherited SIGINT
        # ignored: a shell's background job, a CI runner. Python then leaves
        # it ignored, and the watch could only be killed.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        rows, title, best, _ = table()
        with Live(rich_table(rows, title, best), console=Console(highlight=False), auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(args.watch)
                    rows, title, best, _ = table()
                    live.update(rich_table(rows, title, best), refresh=True)
            except KeyboardInterrupt:
                return 0
    rows, title, best, trials = table()
    print_table(rows, title, args.format, best=best,
                records=[trial_record(t) for t in trials] if args.format == "json" else None)
    if args.format not in ("json", "csv"):  # a line after those would break their parsers
        from tuner.engine import ledger
        from tuner.results.trials import backend_line

        if backend_line(trials):
            print(backend_line(trials))

        runs = ledger.load_runs(project)
        spent = ledger.describe(ledger.totals(runs), len(runs))
        if spent:
            print(f"time: {spent}")
    return 0


def _check_best_flags(args) -> None:
    """Flags of `best` that make no sense together: one line before
    TensorFlow loads (the import alone takes seconds)."""
    if (args.ensemble > 1 or args.tta > 1 or args.refit) and not args.export:
        flag = (f"--ensemble {args.ensemble}" if args.ensemble > 1 else f"--tta {args.tta}" if args.tta > 1
                else "--refit")
        raise TunerError(f"{flag} chooses what to export; add --export DIR")
    if (args.refit_epochs or args.max_time) and not args.refit:
        raise TunerError(f"{'--refit-epochs' if args.refit_epochs else '--max-time'} sets how the refit runs; "
                         "add --refit")


def _cmd_best(args) -> int:
    from tuner.results.trials import best_trials, load_trials, print_table, require_finished, study_row, trial_record

    project = _project(args)
    meta, trials = load_trials(project)  # main checked the flags (_check_best_flags)
    require_finished(meta, trials, project)
    best = best_trials(meta, trials, args.top)
    records = [trial_record(t) for t in best] if args.format == "json" else None
    print_table([study_row(meta, t) for t in best], f"best of {len(trials)} trial(s) in {project}", args.format,
                best=best[0].trial_id, records=records)
    if args.format in ("auto", "table", "md"):
        for t in best:
            print(f"trial {t.trial_id}: {t.trial_dir} (best epoch {t.best_epoch}"
                  + (f", {t.dtype})" if t.dtype else ")"))
    if args.export:
        from tuner.api import export
        from tuner.engine.errors import Stopped

        try:
            export(project, args.export, data=args.data, ensemble=args.ensemble, tta=args.tta, refit=args.refit,
                   refit_epochs=args.refit_epochs, max_time=args.max_time, log=print, release=False)
        except Stopped as e:
            print(f"{e}; its epochs are saved in {project}/refit, run the same command to continue "
                  f"(nothing was exported yet)")
            return _stop_code(str(e))
    return 0


def _cmd_board(args) -> int:
    import importlib.util
    import subprocess

    from tuner.engine.project import require_project

    project = _project(args)
    require_project(project)
    if importlib.util.find_spec("tensorboard") is None:
        raise TunerError("TensorBoard is not installed (TensorFlow 2.21 no longer brings it); pip install tensorboard")
    print(f"TensorBoard on {project}: http://{args.host}:{args.port}/#hparams (Ctrl-C stops it)", flush=True)
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", project, "--port", str(args.port),
           "--host", args.host]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _stop_code(reason: str) -> int:
    """A --max-time stop is the plan (0); a signal's is the shell's 128 + signal number."""
    if reason.startswith("max-time"):
        return 0
    return 130 if "Ctrl-C" in reason else 143


def _cmd_predict(args) -> int:
    from tuner.results.export import predict_submission

    n = predict_submission(args.model, args.data, args.out, batch=args.batch, tta=args.tta)
    print(f"wrote {n} predictions to {args.out}")
    return 0


def _cmd_spaces(args) -> int:
    if args.schema:
        from tuner.schema import schema_text

        sys.stdout.write(schema_text())
        return 0
    from tuner.spaces import list_spaces

    for name, description in list_spaces():
        print(f"{name:12s} {description}")
    return 0


def _cmd_demo_data(args) -> int:
    from tuner import demo

    out = args.out or demo.default_demo_dir()
    summary = demo.generate(out, sizes=args.sizes, scale=args.scale, seed=args.seed, log=print)
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    print(f"demo data in {summary.root}: {counts} images at {','.join(map(str, summary.sizes))} px ({summary.seconds:.1f}s)")
    return 0


def _cmd_check(args) -> int:
    from tuner.data.check import check_data

    root = args.data or os.environ.get("TUNER_DATA")
    if not root:
        from tuner import demo

        root = demo.default_demo_dir()
        if not demo.is_complete(root):
            raise TunerError(f"no data given and no demo data at {root}; pass --data ROOT or run `python -m tuner demo-data`")
    for line in check_data(root, args.image_size, args.batch, scan=args.scan):
        print(line)
    return 0


def _cmd_search(args) -> int:
    from tuner.search import SearchOptions, run_search
    from tuner.engine.clock import process_start

    opts = SearchOptions(
        space=args.space, data=args.data, project=args.project, max_trials=args.max_trials, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, method=args.method, strategy=args.strategy,
        cpu_replicas=args.cpu_replicas, max_time=args.max_time, weights=args.weights, seed=args.seed,
        overwrite=args.overwrite, plain=True if args.plain else None,
        chief=args.chief, connect=args.connect, worker_id=args.worker_id, lease=args.lease,
        warm_start=args.warm_start, token=args.token, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_ca=args.tls_ca, insecure=args.insecure, started=process_start(), backend=args.backend,
    )
    result = run_search(opts)
    return _stop_code(result.stopped) if result.stopped else 0


NEEDS_TENSORFLOW = ("search", "demo-data", "check", "predict")
COMMANDS = {"search": _cmd_search, "spaces": _cmd_spaces, "demo-data": _cmd_demo_data, "check": _cmd_check,
            "status": _cmd_status, "best": _cmd_best, "predict": _cmd_predict, "board": _cmd_board}


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        if args.command == "search":
            from tuner.spaces import load_space

            load_space(args.space)  # a bad space file is one line at once, before TensorFlow loads
        if args.command == "best":
            _check_best_flags(args)
        if args.command in NEEDS_TENSORFLOW or (args.command == "best" and args.export):
            from tuner.backend import select

            name, _ = select(getattr(args, "backend", None))  # before anything imports Keras
            from tuner.backend import installed
            from tuner.quiet import import_tensorflow

            if name == "tensorflow" or installed("tensorflow"):  # tf.data reads the records under JAX too
                import_tensorflow()
        return COMMANDS[args.command](args)
    except TunerError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished epochs are saved, run the same command to continue", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "tensorflow":
            print("error: TensorFlow is not installed; pip install 'flower-tuner[cpu]' (or [gpu]), "
                  "or use the TensorFlow your Kaggle/Colab image ships", file=sys.stderr)
            return 2
        raise


def entry() -> None:
    """`python -m tuner` and the `flower-tuner` script: `main`, then, after a
    search or `best` (whose refit has a --max-time too), an exit that skips
    the interpreter's teardown of TensorFlow and the models and input
    pipelines still in memory (3 to 12 s measured here after a search whose
    files were all on disk, 10-18 s for a stopped run's pipeline): by then
    every file is written and closed, and --max-time is the command's whole
    time."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] in (["search"], ["best"]):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
