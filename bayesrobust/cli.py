"""The ``bayesrobust`` command: run, train, evaluate, sweep, sweep-report, datasets, report, compare."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from bayesrobust.errors import BayesRobustError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment TOML file (see experiments/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set models.lenet.train.epochs=2 (repeatable)")
    parser.add_argument("--out", help="run folder to create (default: runs/<name>/<timestamp>)")
    parser.add_argument("--seed", type=int, help="random seed (overrides run.seed)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (overrides run.device)")
    parser.add_argument("--data-dir", help="folder holding dataset files (else $BAYESROBUST_DATA, else the cache)")
    parser.add_argument("--download", action="store_true", help="download missing dataset files (checksummed)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the incomplete run in RUN_DIR (same config): finished units are kept, the rest runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesrobust",
        description="Bayesian models of digits, attacks on them, and their predictive uncertainty.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="train models, run every configured suite, write the report")
    _common(p)
    p = sub.add_parser("train", help="train (or load) the configured models and save checkpoints only")
    _common(p)
    p = sub.add_parser("evaluate", help="run the suites on checkpoints from an earlier run")
    _common(p)
    p.add_argument("--from", dest="from_run", required=True, metavar="RUN_DIR",
                   help="run folder whose checkpoints/<model>.pt to evaluate")
    p = sub.add_parser("sweep", help="one experiment over a grid of config values x seeds (Ray or serial), resumable",
                       description="Every grid point x seed is an ordinary run folder under one sweep folder; a re-run "
                                   "skips complete trials and reruns the others; a failing trial is recorded and the "
                                   "others go on. The grid also comes from the config's [sweep] table.")
    p.add_argument("config", help="experiment TOML file (see experiments/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value in every trial (repeatable)")
    p.add_argument("--out", help="sweep folder (default: runs/<name>/sweep; the same folder resumes)")
    p.add_argument("--data-dir", help="folder holding dataset files, the same path on every Ray node")
    p.add_argument("--download", action="store_true", help="download missing dataset files (checksummed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--grid", dest="grid", action="append", default=[], metavar="KEY=v1,v2",
                   help="a grid dimension, e.g. --grid models.mlp.train.l1=1e-3,1e-4 (repeatable; values are TOML literals)")
    p.add_argument("--seeds", help="seeds per grid point: a range 0-4 or a list 0,1,2 (default: [sweep].seeds)")
    p.add_argument("--executor", choices=("ray", "serial"), default="ray",
                   help="ray (default: local cores, or the cluster at --address) or serial (in this process)")
    p.add_argument("--address", help="an existing Ray cluster: auto, or ray://HEAD:10001 (default: start Ray here)")
    p.add_argument("--cpus-per-trial", type=float, help="CPU cores per trial (default: [sweep].cpus_per_trial, 1)")
    p = sub.add_parser("sweep-report", help="aggregate a sweep's trials across seeds: tables, intervals, heatmaps")
    p.add_argument("sweep_dir", help="the sweep folder")
    p.add_argument("--metric", dest="patterns", action="append", metavar="PATTERN",
                   help="metric keys to aggregate (glob, repeatable; default: [sweep].metrics or the headline keys)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap over seeds")
    p = sub.add_parser("datasets", help="list datasets, where their files are, and whether they verify")
    p.add_argument("--data-dir", help="folder holding dataset files")
    p.add_argument("--verify", action="store_true", help="load each available dataset and check its checksums")
    p = sub.add_parser("report", help="rebuild figures and report.html / report.md from a run folder")
    p.add_argument("run_dir", help="the run folder")
    p = sub.add_parser("compare", help="runs' metrics side by side with intervals; paired differences marked *")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders; the first is the reference")
    p.add_argument("--metric", dest="patterns", action="append", metavar="PATTERN",
                   help="metric keys to show (glob, repeatable; default: headline accuracy, NLL, calibration, "
                        "shift and detection keys)")
    p.add_argument("--out", help="also write the table as Markdown to this file")
    p.add_argument("--csv", help="also write the table as CSV to this file")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the paired differences")
    p.add_argument("--seed", type=int, default=0)
    return parser


def _load(args) -> object:
    from bayesrobust.config import load_config

    overrides = list(args.overrides or [])  # --seed / --device are validated like the file's values
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    if args.device:
        overrides.append(f'run.device="{args.device}"')
    return load_config(args.config, overrides)


def _out(args, config) -> Path:
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise BayesRobustError(f"--resume {args.resume} continues that folder; drop --out {args.out}")
        return Path(args.resume)
    if args.out:
        return Path(args.out)
    return Path("runs") / config.run.name / time.strftime("%Y%m%d-%H%M%S")


def cmd_run(args, *, suites: bool = True) -> int:
    from bayesrobust.experiment import run_experiment, with_checkpoints
    from bayesrobust.progress import set_quiet

    set_quiet(args.quiet)
    config = _load(args)
    if getattr(args, "from_run", None):
        config = with_checkpoints(config, args.from_run)
    run = run_experiment(config, _out(args, config), data_dir=args.data_dir, download=args.download,
                         overwrite=args.overwrite, resume=bool(args.resume), progress=not args.quiet, suites=suites)
    print(f"run folder: {run.path}")
    if run.file("report.html").exists():
        print(f"report:     {run.file('report.html')}")
    return 0


def cmd_sweep(args) -> int:
    from bayesrobust.progress import set_quiet
    from bayesrobust.sweeps import run_sweep

    set_quiet(args.quiet)
    result = run_sweep(args.config, grid_options=args.grid, seeds=args.seeds, overrides=list(args.overrides), out=args.out,
                       executor=args.executor, address=args.address, cpus_per_trial=args.cpus_per_trial,
                       data_dir=args.data_dir, download=args.download, progress=not args.quiet)
    print(f"sweep folder: {result['sweep_dir']} ({result['complete']} trials run now, {result['skipped']} already complete)")
    for failed in result["failed"]:
        print(f"failed: {failed['name']}: {failed['error'].splitlines()[-1] if failed['error'] else failed['status']}", file=sys.stderr)
    print(f"report:       {result['report']}")
    return 1 if result["failed"] else 0


def cmd_sweep_report(args) -> int:
    from bayesrobust.sweeps import write_sweep_report

    if not (Path(args.sweep_dir) / "manifest.json").exists():
        raise BayesRobustError(f"{args.sweep_dir} is not a sweep folder (no manifest.json)")
    print(f"report: {write_sweep_report(args.sweep_dir, tuple(args.patterns or ()), seed=args.seed)}")
    return 0


def cmd_datasets(args) -> int:
    from bayesrobust.data import DATASETS, load_dataset
    from bayesrobust.data.base import candidate_roots

    print(f"data roots searched: {', '.join(str(p) for p in candidate_roots(args.data_dir))}")
    rows = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        split = spec.splits[-1] if "test" in spec.splits else spec.splits[0]
        if args.verify:  # loading is the slow part (seconds per set): only when asked
            try:
                ds = load_dataset(name, split, args.data_dir)
                status = f"ok ({len(ds)} {split}, {'verified' if ds.info.verified else 'unverified'})"
            except BayesRobustError as exc:
                status = "unavailable: " + str(exc).split(".")[0][:60]
        elif spec.offline:
            status = "offline: embedded in a dependency (--verify loads it)"
        else:
            status = _locate_status(spec, args.data_dir)
        rows.append((name, "/".join(spec.splits), status, spec.description))
    header = ("name", "splits", "status", "description")
    widths = [max(len(r[i]) for r in (header, *rows)) + 2 for i in range(3)]  # columns never run together
    for row in (header, *rows):
        print("".join(f"{cell:<{w}}" for cell, w in zip(row[:3], widths)) + row[3])
    return 0


def _locate_status(spec, data_dir) -> str:
    from bayesrobust.data.download import locate

    found = [locate(f, spec.files_folder, data_dir) for f in spec.remote_files]
    if found and all(found):
        return f"found in {found[0].parent} (--verify to check)"
    if any(found):
        return f"partly found in {next(f for f in found if f).parent}"
    return "missing (use --data-dir, $BAYESROBUST_DATA or --download)"


def cmd_compare(args) -> int:
    from bayesrobust.atomic import write_text_atomic
    from bayesrobust.compare import compare_runs

    if args.resamples < 1:
        raise BayesRobustError(f"--resamples must be >= 1, got {args.resamples}")
    table = compare_runs(args.runs, tuple(args.patterns or ()), resamples=args.resamples, seed=args.seed)
    if not table.keys:
        print("no metric of these runs matches the patterns", file=sys.stderr)
        return 1
    print(table.markdown(), end="")
    if args.out:
        write_text_atomic(Path(args.out), table.markdown())
    if args.csv:
        write_text_atomic(Path(args.csv), table.csv())
    return 0


def cmd_report(args) -> int:
    from bayesrobust.report import build_report
    from bayesrobust.runs import RunDir

    run = RunDir.open(args.run_dir)
    build_report(run)
    if not run.complete:
        print(f"warning: {run.path} is marked INCOMPLETE; the report says so", file=sys.stderr)
    print(f"report: {run.file('report.html')}")
    return 0


class Terminated(BaseException):
    """SIGTERM turned into an exception, so an interrupted run records why it is incomplete."""


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "train":
            return cmd_run(args, suites=False)
        if args.command == "evaluate":
            return cmd_run(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "sweep-report":
            return cmd_sweep_report(args)
        if args.command == "datasets":
            return cmd_datasets(args)
        if args.command == "compare":
            return cmd_compare(args)
        return cmd_report(args)
    except BayesRobustError as exc:
        print(f"bayesrobust: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated):
        print("bayesrobust: interrupted; the run folder is marked INCOMPLETE", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
