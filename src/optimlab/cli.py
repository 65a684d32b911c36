"""The ``optimlab`` command: compare optimizers and list what is available."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import optim
from .lab import SURFACES, compare
from .lab.compare import DEFAULT_LRS, Result
from .train import distributed

DEFAULT_PROBLEMS = ("rosenbrock", "beale")



def _lab_optimizers() -> list[str]:
    """The optimizers the lab runs by default: those whose step() takes no closure and that
    take any parameter (Muon, for 2-D parameters only, is left out)."""
    return optim.names(closure=False, matrices=False)

def _names(text: str, allowed: Sequence[str], what: str, parser: argparse.ArgumentParser):
    names = list(allowed) if text == "all" else [n.strip().lower() for n in text.split(",") if n]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        parser.error(f"unknown {what} {', '.join(unknown) or repr(text)}: "
                     f"choose from {', '.join(allowed)} (or 'all')")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def _lr_grid(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers"
                                         ) from None
    if not values or any(not (v > 0) for v in values):
        raise argparse.ArgumentTypeError(f"learning rates must be > 0, got {text!r}")
    return values


def _table(problem: str, results: list[Result]) -> Table:
    table = Table(title=f"{problem}: best of the learning-rate grid, ranked by final loss")
    for column in ("rank", "optimizer", "lr", "final loss", "distance to min", "steps to target",
                   "seconds"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    ranked = sorted(results, key=lambda r: (r.final_loss, r.optimizer))
    for rank, r in enumerate(ranked, 1):
        table.add_row(str(rank), r.optimizer, f"{r.lr:.3g}",
                      "diverged" if r.diverged else f"{r.final_loss:.3e}",
                      "—" if r.diverged else f"{r.distance:.3e}",
                      "—" if r.steps_to_target is None else str(r.steps_to_target),
                      f"{r.seconds:.2f}")
    return table


def _task_table(task: str, summaries: list) -> Table:
    from .lab.stats import ALPHA
    from .lab.tasks import get_task

    spec = get_task(task)
    seeds = max((len(s.runs) for s in summaries), default=0)
    table = Table(title=f"{task}: tuned learning rate (seed 0), {spec.label} over {seeds} "
                        f"other seeds (target {spec.target:g}, {spec.steps} steps)",
                  caption=f"final: mean ± std over the seeds; 95 % CI: percentile bootstrap "
                          f"of the mean; tied: not different from the best by Welch's t-test, "
                          f"Holm-corrected, α = {ALPHA:g}; steps, seconds: median to the target; "
                          f"div. lrs: diverged learning rates of the grid",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("#", "optimizer", "lr", "final", "95 % CI", "tied", "best", "steps",
                   "seconds", "div. lrs"):
        table.add_column(column, justify="left" if column == "optimizer" else "right",
                         no_wrap=column in ("optimizer", "95 % CI"))
    ranked = sorted(summaries, key=lambda s: (s.mean, s.optimizer))
    for rank, s in enumerate(ranked, 1):
        diverged = sum(1 for v in s.sensitivity.values() if v == float("inf"))
        low, high = s.ci95
        tied = {True: "best" if rank == 1 else "tied", False: "", None: "?"}[s.tied_with_best]
        table.add_row(str(rank), s.optimizer, f"{s.lr:.3g}", f"{s.mean:.4g} ± {s.std:.2g}",
                      f"[{low:.4g}, {high:.4g}]", tied, f"{s.best:.4g}",
                      "—" if s.steps_to_target == float("inf") else f"{s.steps_to_target:g}",
                      "—" if s.seconds_to_target is None else f"{s.seconds_to_target:.3g}",
                      str(diverged))
    return table


def _progress(console: Console, quiet: bool) -> Progress:
    """The commands' progress bar: what runs now, a bar, done/total, elapsed time."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, disable=quiet)


def _report_option(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--report", default=f"report/{command}",
                        help="folder for the HTML page (index.html) and runs.csv/json; 'none'")


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
    from .lab.protocol import performance_profile, sweep
    from .lab.tasks import TASKS

    problems = _names(args.problems, [*SURFACES, *TASKS], "problem", parser)
    optimizers = _names(args.optimizers, _lab_optimizers(), "optimizer", parser)
    surfaces = [p for p in problems if p in SURFACES]
    tasks = [p for p in problems if p in TASKS]
    store = None
    if tasks and args.storage != "none" and args.tuner == "grid":
        from .lab.store import Store, study_name

        name = study_name("compare", tasks, optimizers, args.lrs, args.seeds, args.flavor)
        try:
            store = Store(args.storage, name)
        except ConnectionError as error:
            parser.error(f"{error} (pass --storage sqlite:///file.db, a reachable "
                         f"postgresql:// URL, or none)")
    console = Console(quiet=args.quiet)
    total = (len(surfaces) + len(tasks)) * len(optimizers) * len(args.lrs) \
        + len(tasks) * len(optimizers) * args.seeds
    with _progress(console, args.quiet) as progress:
        task = progress.add_task("compare", total=total)

        def on_run(r: Result) -> None:
            progress.update(task, advance=1, description=f"{r.problem} · {r.optimizer}")

        results = compare(surfaces, optimizers, steps=args.steps, lrs=args.lrs,
                          flavor=args.flavor, target=args.target, on_run=on_run)

        def on_task_run(r) -> None:
            progress.update(task, advance=1, description=f"{r.task} · {r.optimizer}")

        summaries = sweep(tasks, optimizers, args.lrs, seeds=args.seeds, flavor=args.flavor,
                          on_run=on_task_run, store=store, workers=args.workers,
                          tuner=args.tuner)
    for problem in surfaces:
        console.print(_table(problem, [r for r in results if r.problem == problem]))
    for name in tasks:
        console.print(_task_table(name, [s for s in summaries if s.task == name]))
    if len(tasks) > 1:
        taus = (1, 2, 4, 8)
        profile = Table(title="performance profile: share of tasks reached within τ × the "
                              "best optimizer's steps")
        profile.add_column("optimizer")
        for tau in taus:
            profile.add_column(f"τ = {tau}", justify="right")
        for name, shares in sorted(performance_profile(summaries, taus).items(),
                                   key=lambda kv: [-x for x in kv[1]]):
            profile.add_row(name, *(f"{x:.0%}" for x in shares))
        console.print(profile)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"surfaces": [r.as_dict() for r in results],
                       "tasks": [s.as_dict() for s in summaries]}, f, indent=2)
        _wrote(console, args.json)
    _html(args, console, surfaces=results, summaries=summaries)
    return 0


def cmd_init_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import csv
    import os

    import torch

    from . import init

    activations = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid,
                   "leaky_relu": torch.nn.LeakyReLU, "elu": torch.nn.ELU, "selu": torch.nn.SELU,
                   "gelu": torch.nn.GELU, "silu": torch.nn.SiLU}
    if args.activation not in activations:
        parser.error(f"unknown activation {args.activation}: choose from "
                     f"{', '.join(activations)}")
    try:
        initializer = init.get(args.init)
    except ValueError as error:
        parser.error(str(error))
    layers: list[torch.nn.Module] = []
    for _ in range(args.depth):
        layers += [torch.nn.Linear(args.width, args.width), activations[args.activation]()]
    model = init.apply(torch.nn.Sequential(*layers), weight=initializer, bias="zeros",
                       seed=args.seed)
    inputs = torch.randn(args.batch, args.width, generator=torch.Generator().manual_seed(
        args.seed))
    diagnosis = init.diagnose(model, inputs)
    console = Console()
    console.print(diagnosis.table())
    os.makedirs(args.out, exist_ok=True)
    title = f"{args.depth}×{args.width} MLP, {args.activation}, init {args.init}"
    png = diagnosis.plot(os.path.join(args.out, "activations.png"), title=title)
    table = os.path.join(args.out, "layers.csv")
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(diagnosis.rows()[0]))
        writer.writeheader()
        writer.writerows(diagnosis.rows())
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
    import os

    from .lab.report import suite

    optimizers = _names(args.optimizers, _lab_optimizers(), "optimizer", parser)
    surfaces, tasks = ("rosenbrock", "beale"), ("noisy_quadratic", "digits_mlp")
    lrs = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
    total = len(optimizers) * (len(lrs) * (len(surfaces) + len(tasks))
                               + len(tasks) * args.seeds)
    os.makedirs(args.out, exist_ok=True)
    storage = None if args.storage == "none" else (
        args.storage or f"sqlite:///{os.path.abspath(os.path.join(args.out, 'runs.db'))}")
    console = Console(quiet=args.quiet)
    with _progress(console, args.quiet) as progress:
        bar = progress.add_task("suite", total=total)

        def on_run(r) -> None:
            name = getattr(r, "problem", None) or getattr(r, "task", "")
            progress.update(bar, advance=1, description=f"{name} · {r.optimizer}")

        try:
            index = suite(args.out, optimizers=optimizers, surfaces=surfaces, tasks=tasks,
                          lrs=lrs, seeds=args.seeds, storage=storage, on_run=on_run)
        except ConnectionError as error:
            parser.error(str(error))
    _wrote(console, f"{index} (and runs.csv, runs.json)")
    return 0


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import os
    import subprocess

    from .lab.launch import torchrun_command, train_task

    if args.nproc_per_node and "WORLD_SIZE" not in os.environ:  # launch, then be rank 0's echo
        argv, rest = [], iter(args.argv or sys.argv[1:])
        for arg in rest:  # every argument but --nproc-per-node goes to each process
            if arg == "--nproc-per-node":
                next(rest)
            elif not arg.startswith("--nproc-per-node="):
                argv.append(arg)
        threads = str(max(1, (os.cpu_count() or 1) // args.nproc_per_node))
        env = {"OMP_NUM_THREADS": threads, **os.environ}  # the cores, shared out
        return subprocess.call(torchrun_command(args.nproc_per_node, argv), env=env)
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
        parser.error(f"unknown task {args.tasks}: choose from "
                     f"{', '.join(c.task for c in classics.CLAIMS)} (or 'all')")
    console = Console(quiet=args.quiet)
    results = classics.run(chosen, seeds=args.seeds)
    table = Table(title="the classic comparisons, re-run here")
    for column in ("claim", "what we observe"):
        table.add_column(column)
    for claim, verdict, summaries in results:
        table.add_row(claim.statement, verdict)
        console.print(_task_table(claim.task, summaries))
    console.print(table)
    _html(args, console, summaries=[s for _, _, group in results for s in group],
          classics=[(claim.statement, verdict) for claim, verdict, _ in results])
    return 0


def cmd_list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    print("optimizers:", ", ".join(optim.names()))
    from .lab.tasks import TASKS

    print("problems:  ", ", ".join([*SURFACES, *TASKS]))
    from . import init

    print("initializers:", ", ".join(init.names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optimlab", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("compare", help="compare optimizers on surfaces and trainable tasks")
    p.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS),
                   help=f"comma-separated, or 'all' (default: {','.join(DEFAULT_PROBLEMS)})")
    p.add_argument("--optimizers", default="all", help="comma-separated, or 'all' (default)")
    p.add_argument("--steps", type=_positive_int, default=1000, help="step budget per run")
    p.add_argument("--lrs", type=_lr_grid, default=list(DEFAULT_LRS),
                   help="comma-separated learning-rate grid (default: 1e-4 … 3.16, ×√10)")
    p.add_argument("--seeds", type=_positive_int, default=5,
                   help="seeds for the tuned setting on trainable tasks, besides the tuning "
                        "seed (default 5)")
    p.add_argument("--storage", default="sqlite:///optimlab.db",
                   help="database for the runs of trainable tasks (SQLAlchemy URL; 'none' keeps "
                        "them in memory); the same command resumes an interrupted sweep")
    p.add_argument("--tuner", choices=("grid", "tpe"), default="grid",
                   help="learning rates from the --lrs grid, or as many proposed by Optuna's "
                        "TPE within its range (in memory)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="processes sharing the runs (default 1)")
    p.add_argument("--flavor", choices=optim.FLAVORS, default="torch")
    p.add_argument("--target", type=float, default=1e-4, help="loss that counts as reached")
    p.add_argument("--json", help="also write every result to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    _report_option(p, "compare")
    p.set_defaults(handler=cmd_compare)
    p = sub.add_parser("init-report", help="activation statistics of a deep MLP at init")
    p.add_argument("--depth", type=_positive_int, default=10)
    p.add_argument("--width", type=_positive_int, default=500)
    p.add_argument("--activation", default="tanh")
    p.add_argument("--init", default="normal:0.01",
                   help="initializer id, e.g. he_normal, glorot_uniform, normal:0.01")
    p.add_argument("--batch", type=_positive_int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="report/init", help="folder for the PNG and CSV")
    p.set_defaults(handler=cmd_init_report)
    p = sub.add_parser("properties", help="measured property table of the optimizers")
    p.add_argument("--optimizers", default="all", help="comma-separated, or 'all' (default)")
    p.add_argument("--json", help="also write the measurements to this JSON file")
    p.add_argument("--quiet", action="store_true")
    _report_option(p, "properties")
    p.set_defaults(handler=cmd_properties)
    p = sub.add_parser("animate", help="GIFs of trajectories and saddle escape, a LR figure")
    p.add_argument("--problem", default="rosenbrock", help="surfaces, comma-separated or 'all'")
    p.add_argument("--optimizers", default="sgd,momentum,nesterov,adagrad,rmsprop,adam",
                   help="comma-separated, or 'all'")
    p.add_argument("--steps", type=_positive_int, default=300)
    p.add_argument("--out", default="report/animations", help="folder for the GIFs and PNG")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=cmd_animate)
    p = sub.add_parser("run", help="the default quick suite and its HTML report (make run)")
    p.add_argument("--optimizers", default="all", help="comma-separated, or 'all' (default)")
    p.add_argument("--seeds", type=_positive_int, default=2,
                   help="seeds of each tuned setting on the tasks (default 2, to be quick: "
                        "the report says that fewer than 5 make rough statistics)")
    p.add_argument("--out", default="report", help="folder for index.html, runs.csv/json")
    p.add_argument("--storage", default=None,
                   help="database URL for the runs (default: OUT/runs.db; 'none': in memory)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=cmd_run)
    p = sub.add_parser("train", help="train on a task, data-parallel with --nproc-per-node")
    p.add_argument("--task", default="digits_mlp", help="a trainable task (see 'list')")
    p.add_argument("--optimizer", default="adam", help="an optimizer id (see 'list')")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=_positive_int, default=5)
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the history and samples/s to this JSON file")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=cmd_train)
    p = sub.add_parser("ablate", help='"upgrade the network": one improvement at a time')
    p.add_argument("--seeds", type=_positive_int, default=3)
    p.add_argument("--epochs", type=_positive_int, default=12)
    p.add_argument("--json", help="also write the errors to this JSON file")
    p.add_argument("--quiet", action="store_true")
    _report_option(p, "ablate")
    p.set_defaults(handler=cmd_ablate)
    p = sub.add_parser("classics", help="the three often-quoted optimizer results, re-run")
    p.add_argument("--tasks", default="all", help="mnist_cnn, word2vec, char_lstm or 'all'")
    p.add_argument("--seeds", type=_positive_int, default=2)
    p.add_argument("--quiet", action="store_true")
    _report_option(p, "classics")
    p.set_defaults(handler=cmd_classics)
    p = sub.add_parser("list", help="list optimizers, problems and initializers")
    p.set_defaults(handler=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    if args.command is None:
        parser.print_help()
        return 2
    return args.handler(args, parser)


if __name__ == "__main__":
    sys.exit(main())
