"""The ``optimlab`` command: compare optimizers and list what is available."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import optim
from .lab import SURFACES, TASKS
from .lab.protocol import DEFAULT_LRS, Summary
from .lab.store import GRACE, HEARTBEAT
from .naming import unknown as unknown_name
from .train import distributed

DEFAULT_PROBLEMS = ("rosenbrock", "beale")
#: where ``optimlab compare`` stores a sweep with a trainable task unless told otherwise
DEFAULT_STORE = "sqlite:///optimlab.db"


def _lab_optimizers() -> list[str]:
    """The optimizers the lab runs: those whose step() takes no closure. One that does not
    apply to a problem (Muon on a 2-D surface's vector, or on a model without a hidden weight
    matrix) is listed there as not applicable (:mod:`optimlab.lab.construct`); on a model,
    Muon runs in its combined form (AdamW for embeddings, head, norms and biases)."""
    return optim.names(closure=False)


def _not_applicable(rows: list[Summary]) -> str | None:
    """A table's caption line naming the rows that were not run, and why."""
    skipped = [f"{s.optimizer}: {s.not_applicable}" for s in rows if s.not_applicable]
    return "not applicable — " + "; ".join(skipped) if skipped else None


def _names(text: str, allowed: Sequence[str], what: str, parser: argparse.ArgumentParser):
    names = list(allowed) if text == "all" else [n.strip().lower() for n in text.split(",") if n]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        parser.error(unknown_name(what, unknown[0] if unknown else text, allowed,
                                  also=" (or 'all')"))
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def _grace(text: str) -> int:
    value = _positive_int(text)
    if value < 2 * HEARTBEAT:
        raise argparse.ArgumentTypeError(f"{value} must be >= {2 * HEARTBEAT} (two heartbeats)")
    return value


def _lr_grid(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers"
                                         ) from None
    if not values or any(not (0 < v < math.inf) for v in values):
        raise argparse.ArgumentTypeError(f"learning rates must be finite and > 0, got {text!r}")
    return values


def _table(problem: str, summaries: list[Summary]) -> Table:
    table = Table(title=f"{problem}: best of the learning-rate grid, ranked by final loss",
                  caption=_not_applicable(summaries))
    for column in ("rank", "optimizer", "lr", "final loss", "distance to min", "steps to target",
                   "seconds"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    ranked = [s.runs[0] for s in sorted(summaries, key=lambda s: (s.mean, s.optimizer))]
    for rank, r in enumerate(ranked, 1):
        if r.not_applicable:
            table.add_row("—", r.optimizer, "—", "not applicable", "—", "—", "—")
            continue
        table.add_row(str(rank), r.optimizer, f"{r.lr:.3g}",
                      "diverged" if r.diverged else f"{r.final:.3e}",
                      "—" if r.diverged else f"{r.distance:.3e}",
                      "—" if r.steps_to_target is None else str(r.steps_to_target),
                      f"{r.seconds:.2f}")
    return table


def _task_table(task: str, summaries: list[Summary]) -> Table:
    from .lab.stats import ALPHA
    from .lab.tasks import get_task

    spec = get_task(task)
    seeds = max((len(s.runs) for s in summaries), default=0)
    table = Table(title=f"{task}: tuned learning rate (seed 0), {spec.label} over {seeds} "
                        f"other seeds (target {spec.target:g}, {spec.steps} steps)",
                  caption=f"final: mean ± std over the seeds; 95 % CI: percentile bootstrap "
                          f"of the mean; tied: not different from the best by Welch's t-test, "
                          f"Holm-corrected, α = {ALPHA:g}; steps, seconds: median to the target; "
                          f"div. lrs: diverged learning rates of the grid"
                          + (f"\n{_not_applicable(summaries)}" if _not_applicable(summaries)
                             else ""),
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("#", "optimizer", "lr", "final", "95 % CI", "tied", "best", "steps",
                   "seconds", "div. lrs"):
        table.add_column(column, justify="left" if column == "optimizer" else "right",
                         no_wrap=column in ("optimizer", "95 % CI"))
    ranked = sorted(summaries, key=lambda s: (s.mean, s.optimizer))
    for rank, s in enumerate(ranked, 1):
        if s.not_applicable:
            table.add_row("—", s.optimizer, "—", "not applicable", *["—"] * 6)
            continue
        diverged = sum(1 for v in s.sensitivity.values() if v == float("inf"))
        low, high = s.ci95
        tied = {True: "best" if rank == 1 else "tied", False: "", None: "?"}[s.tied_with_best]
        several = len(s.runs) > 1  # one seed has no spread and no interval
        table.add_row(str(rank), s.optimizer, f"{s.lr:.3g}",
                      f"{s.mean:.4g} ± {s.std:.2g}" if several else f"{s.mean:.4g}",
                      f"[{low:.4g}, {high:.4g}]" if several else "—", tied, f"{s.best:.4g}",
                      "—" if s.steps_to_target == float("inf") else f"{s.steps_to_target:g}",
                      "—" if s.seconds_to_target is None else f"{s.seconds_to_target:.3g}",
                      str(diverged))
    return table


def _progress(console: Console, quiet: bool) -> Progress:
    """The commands' progress bar: what runs now, a bar, done/total, elapsed time."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, disable=quiet)


def _done(progress: Progress, bar) -> None:
    """A finished sweep's bar at its end (runs reused from the storage, or not applicable,
    are not counted as they are made)."""
    progress.update(bar, completed=next(t.total for t in progress.tasks if t.id == bar))


def _wrote(console: Console, what: str) -> None:
    """Say which files were written, each path whole on its line (never wrapped)."""
    console.print(f"wrote {what}", soft_wrap=True)


def _html(args: argparse.Namespace, console: Console, **sections) -> None:
    """Write the command's self-contained HTML page (and runs.csv/json) to ``--report``."""
    from .lab.report import Report, write

    if args.report == "none":
        return
    index = write(Report(**sections), args.report)
    _wrote(console, str(index))


def cmd_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .lab.protocol import performance_profile, planned, sweep
    from .lab.report import exported

    problems = _names(args.problems, [*SURFACES, *TASKS], "problem", parser)
    optimizers = _names(args.optimizers, _lab_optimizers(), "optimizer", parser)
    surfaces = [p for p in problems if p in SURFACES]
    tasks = [p for p in problems if p in TASKS]
    # a sweep of surfaces alone takes seconds: by default stored only with a task; a storage
    # given is used either way; TPE runs in memory
    storage = args.storage if args.storage is not None else (DEFAULT_STORE if tasks else None)
    storage = storage if args.tuner == "grid" else None
    console = Console(quiet=args.quiet)
    with _progress(console, args.quiet) as progress:
        bar = progress.add_task("compare", total=planned(problems, optimizers, len(args.lrs),
                                                         args.seeds))

        def on_run(r) -> None:
            progress.update(bar, advance=1, description=f"{r.problem} · {r.optimizer}")

        try:
            summaries = sweep(problems, optimizers, args.lrs, seeds=args.seeds,
                              steps=args.steps, target=args.target, flavor=args.flavor,
                              on_run=on_run, storage=storage, workers=args.workers,
                              tuner=args.tuner, grace=args.grace)
        except ConnectionError as error:
            parser.error(f"{error} (pass --storage sqlite:///file.db, a reachable "
                         f"postgresql:// URL, or none)")
        _done(progress, bar)
    for problem in surfaces:
        console.print(_table(problem, [s for s in summaries if s.problem == problem]))
    for name in tasks:
        console.print(_task_table(name, [s for s in summaries if s.problem == name]))
    if len(tasks) > 1:
        taus = (1, 2, 4, 8)
        profile = Table(title="performance profile: share of tasks reached within τ × the "
                              "best optimizer's steps")
        profile.add_column("optimizer")
        for tau in taus:
            profile.add_column(f"τ = {tau}", justify="right")
        ranked = performance_profile([s for s in summaries if s.problem in tasks], taus)
        for name, shares in sorted(ranked.items(), key=lambda kv: [-x for x in kv[1]]):
            profile.add_row(name, *(f"{x:.0%}" for x in shares))
        console.print(profile)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(exported(summaries), f, indent=2)
        _wrote(console, args.json)
    _html(args, console, summaries=summaries)
    return 0


def cmd_init_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .lab.initreport import init_report

    try:
        diagnosis, png, table = init_report(args.out, depth=args.depth, width=args.width,
                                            activation=args.activation, initializer=args.init,
                                            batch=args.batch, seed=args.seed)
    except ValueError as error:
        parser.error(str(error))
    console = Console()
    console.print(diagnosis.table())
    _wrote(console, f"{png} and {table}")
    return 0


def cmd_properties(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .lab.properties import measure, table

    optimizers = _names(args.optimizers, _lab_optimizers(), "optimizer", parser)
    rows = measure(optimizers)
    console = Console(quiet=args.quiet)
    console.print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.as_dict() for r in rows], f, indent=2)
        _wrote(console, args.json)
    _html(args, console, properties=rows)
    return 0


def cmd_animate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import os

    from .lab.animate import animate_saddle, animate_surface, learning_rate_figure

    problem = _names(args.problem, list(SURFACES), "problem", parser)
    optimizers = _names(args.optimizers, _lab_optimizers(), "optimizer", parser)
    os.makedirs(args.out, exist_ok=True)
    console = Console(quiet=args.quiet)
    written = [animate_surface(p, optimizers, os.path.join(args.out, f"{p}.gif"),
                               steps=args.steps) for p in problem]
    written.append(animate_saddle(optimizers, os.path.join(args.out, "saddle.gif"),
                                  steps=args.steps))
    written.append(learning_rate_figure(os.path.join(args.out, "learning_rates.png")))
    for path in written:
        _wrote(console, str(path))
    args.report = args.out
    _html(args, console, animations=written)
    return 0


def cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .lab import suite as quick
    from .lab.protocol import planned

    optimizers = _names(args.optimizers, _lab_optimizers(), "optimizer", parser)
    console = Console(quiet=args.quiet)
    with _progress(console, args.quiet) as progress:
        bar = progress.add_task("suite", total=planned([*quick.SURFACES, *quick.TASKS],
                                                       optimizers, len(quick.LRS), args.seeds))

        def on_run(r) -> None:
            progress.update(bar, advance=1, description=f"{r.problem} · {r.optimizer}")

        # the animations show the optimizers asked for (all of them: the suite's six classics)
        chosen = {} if args.optimizers == "all" else {"animate": optimizers}
        try:
            index = quick.suite(args.out, optimizers=optimizers, seeds=args.seeds,
                                storage=args.storage, workers=args.workers, on_run=on_run,
                                grace=args.grace, **chosen)
        except ConnectionError as error:
            parser.error(str(error))
        _done(progress, bar)
    _wrote(console, f"{index} (and runs.csv, runs.json)")
    return 0


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import os

    from .lab.launch import launch, train_task

    if args.nproc_per_node and "WORLD_SIZE" not in os.environ:  # launch, then be rank 0's echo
        return launch(args.nproc_per_node, args.argv or sys.argv[1:])
    try:
        summary = train_task(args.task, args.optimizer, args.lr, epochs=args.epochs,
                             batch_size=args.batch_size, strategy=args.strategy,
                             engine=args.engine, checkpoint_dir=args.checkpoint_dir,
                             checkpoint_every=args.checkpoint_every, resume=args.resume,
                             seed=args.seed, progress=not args.quiet)
    except ValueError as error:
        parser.error(str(error))
    world = distributed.world()
    distributed.shutdown()
    if not world.main:
        return 0
    console = Console(quiet=args.quiet)
    table = Table(title=f"{args.task} · {args.optimizer} (lr {args.lr:g}) · "
                        f"{summary['processes']} process(es), {summary['strategy']}")
    keys = [k for k in ("epoch", "train_loss", "train_error", "test_loss", "test_error")
            if any(row.get(k) is not None for row in summary["history"])]
    for key in keys:
        table.add_column(key, justify="right")
    for row in summary["history"]:
        table.add_row(*(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                        for k in keys))
    console.print(table)
    console.print(f"{summary['samples_per_second']:.0f} samples/s over "
                  f"{summary['seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


def cmd_ablate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .lab.ablation import UPGRADES, ablate, changes

    console = Console(quiet=args.quiet)
    with _progress(console, args.quiet) as progress:
        bar = progress.add_task("ablation", total=len(UPGRADES) * args.seeds)
        rows = ablate(args.seeds, args.epochs,
                      on_run=lambda name, seed, error: progress.update(bar, advance=1,
                                                                       description=name))
    table = Table(title=f"upgrading a digits MLP one step at a time (test error, "
                        f"{args.seeds} seeds, {args.epochs} epochs)")
    for column in ("upgrade", "test error (mean ± std)", "change"):
        table.add_column(column, justify="left" if column == "upgrade" else "right")
    for upgrade, mean, std, change in changes(rows):
        table.add_row(upgrade, f"{mean:.4f} ± {std:.4f}", change)
    console.print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"upgrade": r.upgrade, "errors": r.errors} for r in rows], f, indent=2)
    _html(args, console, ablation=rows)
    return 0


def cmd_classics(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .lab import classics

    chosen = [c for c in classics.CLAIMS if args.tasks == "all" or c.task in args.tasks.split(",")]
    if not chosen:
        tasks = dict.fromkeys(c.task for c in classics.CLAIMS)
        parser.error(unknown_name("task", args.tasks, tasks, also=" (or 'all')"))
    console = Console(quiet=args.quiet)
    results = classics.run(chosen, seeds=args.seeds)
    table = Table(title="the classic comparisons, re-run here")
    for column in ("claim", "what we observe"):
        table.add_column(column)
    ran: dict[str, dict[int, Summary]] = {}  # task → its summaries, each once
    for claim, verdict, summaries in results:
        table.add_row(claim.statement, verdict)
        ran.setdefault(claim.task, {}).update((id(s), s) for s in summaries)
    for task, summaries in ran.items():
        if summaries:  # a skipped claim ran nothing
            console.print(_task_table(task, list(summaries.values())))
    console.print(table)
    _html(args, console, summaries=[s for group in ran.values() for s in group.values()],
          classics=[(claim.statement, verdict) for claim, verdict, _ in results])
    return 0


def cmd_list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    print("optimizers:", ", ".join(optim.names()))
    print("problems:  ", ", ".join([*SURFACES, *TASKS]))
    from . import init

    print("initializers:", ", ".join(init.names()))
    return 0


def _option(*flags: str, **kwargs) -> argparse.ArgumentParser:
    """A parent parser (``parents=``) holding one option shared by several commands."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(*flags, **kwargs)
    return parent


QUIET = _option("--quiet", action="store_true", help="no progress bar and no table")
JSON = _option("--json", help="also write the results to this JSON file")
OPTIMIZERS = _option("--optimizers", default="all", help="comma-separated, or 'all' (default)")
SEED = _option("--seed", type=int, default=0)
WORKERS = _option("--workers", type=_positive_int, default=1,
                  help="processes sharing the runs (default 1)")
GRACE_SECONDS = _option("--grace", type=_grace, default=GRACE, metavar="SECONDS",
                        help=f"a stored run whose worker sent no heartbeat (one every "
                             f"{HEARTBEAT} s) for this long is taken as a dead worker's and "
                             f"redone (default {GRACE})")


def _report(command: str) -> argparse.ArgumentParser:
    return _option("--report", default=f"report/{command}",
                   help="folder for the HTML page (index.html) and runs.csv/json; 'none'")


def _seeds(default: int) -> argparse.ArgumentParser:
    rough = "; fewer than 5 make rough statistics" if default < 5 else ""
    return _option("--seeds", type=_positive_int, default=default,
                   help=f"seeds of each tuned setting, besides the tuning seed (default "
                        f"{default}{rough})")


def _storage(default: str | None, shown: str) -> argparse.ArgumentParser:
    return _option("--storage", default=default,
                   help=f"database for the runs (SQLAlchemy URL, default {shown}; 'none': in "
                        f"memory); the same command resumes an interrupted sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optimlab", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    def command(name, handler, help, *parents):
        p = sub.add_parser(name, help=help, parents=list(parents))
        p.set_defaults(handler=handler, command_parser=p)  # its errors show its own usage
        return p

    p = command("compare", cmd_compare, "compare optimizers on surfaces and trainable tasks",
                OPTIMIZERS, _seeds(5),
                _storage(None, f"{DEFAULT_STORE} for a sweep with a task, in memory for "
                               f"surfaces alone"),
                WORKERS, GRACE_SECONDS, JSON, QUIET, _report("compare"))
    p.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS),
                   help=f"comma-separated, or 'all' (default: {','.join(DEFAULT_PROBLEMS)})")
    p.add_argument("--steps", type=_positive_int, default=1000,
                   help="step budget per run on the surfaces")
    p.add_argument("--lrs", type=_lr_grid, default=list(DEFAULT_LRS),
                   help="comma-separated learning-rate grid (default: 1e-4 … 3.16, ×√10)")
    p.add_argument("--tuner", choices=("grid", "tpe"), default="grid",
                   help="learning rates from the --lrs grid, or as many within its range: a "
                        "third evenly spread, the rest proposed by Optuna's TPE (in memory)")
    p.add_argument("--flavor", choices=optim.FLAVORS, default="torch")
    p.add_argument("--target", type=float, default=1e-4,
                   help="loss that counts as reached on the surfaces")
    p = command("init-report", cmd_init_report, "activation statistics of a deep MLP at init",
                SEED)
    p.add_argument("--depth", type=_positive_int, default=10)
    p.add_argument("--width", type=_positive_int, default=500)
    p.add_argument("--activation", default="tanh")
    p.add_argument("--init", default="normal:0.01",
                   help="initializer id, e.g. he_normal, glorot_uniform, normal:0.01")
    p.add_argument("--batch", type=_positive_int, default=1000)
    p.add_argument("--out", default="report/init", help="folder for the PNG and CSV")
    command("properties", cmd_properties, "measured property table of the optimizers",
            OPTIMIZERS, JSON, QUIET, _report("properties"))
    p = command("animate", cmd_animate, "GIFs of trajectories and saddle escape, a LR figure",
                QUIET)
    p.add_argument("--problem", default="rosenbrock", help="surfaces, comma-separated or 'all'")
    p.add_argument("--optimizers", default="sgd,momentum,nesterov,adagrad,rmsprop,adam",
                   help="comma-separated, or 'all'")
    p.add_argument("--steps", type=_positive_int, default=300)
    p.add_argument("--out", default="report/animations", help="folder for the GIFs and PNG")
    p = command("run", cmd_run, "the default quick suite and its HTML report (make run)",
                OPTIMIZERS, _seeds(2), _storage(None, "OUT/runs.db"), WORKERS, GRACE_SECONDS,
                QUIET)
    p.add_argument("--out", default="report", help="folder for index.html, runs.csv/json")
    p = command("train", cmd_train, "train on a task, data-parallel with --nproc-per-node",
                SEED, QUIET)
    p.add_argument("--task", default="digits_mlp",
                   help="a trainable task (see 'list'; default digits_mlp)")
    p.add_argument("--optimizer", default="adam",
                   help="an optimizer id (see 'list'; default adam)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--epochs", type=_positive_int, default=5, help="epochs (default 5)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="global batch, shared by the processes (default: the task's)")
    p.add_argument("--nproc-per-node", type=_positive_int, default=None,
                   help="launch this many processes with torchrun (gloo on CPU, NCCL on GPU)")
    p.add_argument("--strategy", choices=distributed.STRATEGIES, default="ddp",
                   help="with several processes: DDP, DDP + ZeroRedundancyOptimizer, or FSDP2")
    p.add_argument("--engine", choices=optim.ENGINES, default="auto")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoints (written by rank 0)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None,
                   help="also checkpoint every N steps (default: at each epoch end)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint, at any number of processes")
    p.add_argument("--json", help="write the history and samples/s to this JSON file")
    p = command("ablate", cmd_ablate, '"upgrade the network": one improvement at a time',
                JSON, QUIET, _report("ablate"))
    p.add_argument("--seeds", type=_positive_int, default=3)
    p.add_argument("--epochs", type=_positive_int, default=12)
    from .lab import classics

    p = command("classics", cmd_classics, "often-quoted optimizer results (adaptive vs SGD, "
                "Muon vs AdamW, Schedule-Free vs cosine, Lion's lr, no dominance), re-run",
                _seeds(2), QUIET, _report("classics"))
    p.add_argument("--tasks", default="all",
                   help=f"comma-separated tasks of the claims "
                        f"({', '.join(dict.fromkeys(c.task for c in classics.CLAIMS))}) or "
                        f"'all'")
    command("list", cmd_list, "list optimizers, problems and initializers")
    return parser


def _check_output(path: str, parser: argparse.ArgumentParser) -> None:
    """Make ``--json``'s folder and check that the file can be written, before the work whose
    results it would hold (a bad path is a one-line error now, not a traceback after it)."""
    import os

    existed = os.path.exists(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as error:
        parser.error(f"--json {path}: cannot write it ({error.strerror or error})")
    if not existed:
        os.unlink(path)


#: what a command interrupted by Ctrl-C says about continuing.
RESUME_HINT = {"train": "rerun it with --resume (and its --checkpoint-dir) to continue",
               "compare": "rerun the same command with its --storage to continue",
               "run": "rerun the same command with its --storage to continue"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "json", None):
        _check_output(args.json, args.command_parser)
    try:
        return args.handler(args, args.command_parser)
    except KeyboardInterrupt:
        hint = RESUME_HINT.get(args.command, "finished work was kept")
        print(f"\noptimlab {args.command}: interrupted; {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
