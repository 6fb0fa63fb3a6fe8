"""The `automixer` command: thin verbs that hand off to the library.

A mistake the user can make (a bad config, a missing file) is printed as one line on stderr with
exit status 2 and no traceback.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from automixer.errors import AutomixerError, database_error_line, os_error_line

app = typer.Typer(
    name="automixer",
    help="Find the best pretraining data mixture: proxy sweeps, surrogates, solver, recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output gets a fixed width wide enough for the tables.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)]
RunDirArg = Annotated[
    Path, typer.Argument(help="A run directory written by `automixer sweep`.", show_default=False)
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
MetricsOpt = Annotated[Path | None, typer.Option(help="A second table of metrics, joined on --id.")]
IdOpt = Annotated[
    str | None,
    typer.Option("--id", help="Join / id column (default: run_id, run, id or index)."),
]
DomainsOpt = Annotated[
    list[str] | None,
    typer.Option("--domains", help="Weight columns: names or glob patterns (repeatable)."),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", help="Target columns: names, globs, a|b alternatives (repeatable)."),
]
FamilyOpt = Annotated[
    list[str] | None,
    typer.Option("--family", help="NAME=PATTERN: a target averaged over matching columns."),
]
PhasesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--phases",
        help="NAME=SHARE per phase, in order, for a schedule table (weight columns "
        "<domain>@<phase> or phase_<k>_<domain>) holding each phase's own mixture; a table of "
        "shares of the whole run gives its own.",
    ),
]
ObjectiveOpt = Annotated[
    list[str] | None,
    typer.Option(help="TARGET=WEIGHT of the objective (default: all targets equally)."),
]


def user_errors(fn: F) -> F:
    """Turn the package's own errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AutomixerError as e:
            err_console.print(
                f"[bold red]error:[/] {escape(e.format())}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except OSError as e:  # permission denied, a full disk, a folder that is a file
            err_console.print(
                "[bold red]error:[/] " + escape(os_error_line(e)), highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except Exception as e:  # the ledger's database gone (a restart past the retries)
            line = database_error_line(e)
            if line is None:
                raise
            err_console.print("[bold red]error:[/] " + escape(line), highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:
            what = "terminated" if isinstance(e, Terminated) else "interrupted"
            err_console.print(f"{what}; finished work is kept, run the command again to resume")
            raise typer.Exit(143 if isinstance(e, Terminated) else 130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def data(
    config: ConfigArg,
    quiet: QuietOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Resolve and check the config without reading or downloading any text.",
        ),
    ] = False,
) -> None:
    """Build the domain corpora (documents, tokenizer, token shards) and print the domains table."""
    from automixer.pipeline.data import dry_run as plan_only
    from automixer.pipeline.data import run_data

    if dry_run:
        plan_only(config, console)
        return
    run_data(config, progress=not quiet, console=console)


@app.command()
@user_errors
def audit(
    config: ConfigArg,
    quiet: QuietOpt = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0.01,
            max=1.0,
            help="Jaccard of word 5-gram shingle sets at which documents are near-duplicates "
            "(default: data.near_threshold, 0.8).",
        ),
    ] = None,
) -> None:
    """Near-duplicates (MinHash LSH) within and across domains and tiers, and what per-domain
    and global deduplication would remove; written to the run directory."""
    from automixer.curation.audit import run_audit

    run_audit(config, console, threshold=threshold, progress=not quiet)


@app.command()
@user_errors
def run(config: ConfigArg, quiet: QuietOpt = False) -> None:
    """The whole loop: data, sweep, fit, solve, export, report."""
    from automixer.pipeline.run import run_all

    run_all(config, progress=not quiet, console=console)


@app.command()
@user_errors
def sweep(
    config: ConfigArg,
    quiet: QuietOpt = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed/--no-retry-failed",
            help="Queue the runs whose last attempt failed again (default).",
        ),
    ] = True,
) -> None:
    """Plan and train the proxy swarm; resumes where it stopped, retrying failed runs."""
    from automixer.pipeline.sweep import run_sweep

    run_sweep(config, console=console, progress=not quiet, retry_failed=retry_failed)


@app.command()
@user_errors
def worker(
    storage: Annotated[
        str | None,
        typer.Option(help="Ledger URL of the running sweep (default: $AUTOMIXER_STORAGE)."),
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Sweep name, if the ledger holds several.")
    ] = None,
) -> None:
    """Join a running sweep from another process or machine."""
    import os

    from automixer.pipeline.sweep import join_sweep
    from automixer.sweep.worker import STORAGE_ENV

    url = storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise AutomixerError(f"give --storage URL or set {STORAGE_ENV}", field="--storage")
    join_sweep(url, study, console)


@app.command("eval")
@user_errors
def eval_(
    proxy: Annotated[
        Path,
        typer.Argument(
            help="A proxy file: <run dir>/proxies/<run_id>.pt from a sweep, or one that "
            "`automixer validate` trained.",
            show_default=False,
        ),
    ],
    suite: Annotated[
        list[str] | None,
        typer.Option("--suite", help="Built-in suite (repeatable; default: its config's)."),
    ] = None,
    n: Annotated[
        int | None, typer.Option("--n", help="Items per suite (default: its config's).")
    ] = None,
    domains: Annotated[
        bool,
        typer.Option(help="Also held-out bits per byte of its config's domains (reads the data)."),
    ] = True,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics to this JSON file.")
    ] = None,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The config whose domains to score (default: the proxy's own, built-in "
            "corpora only; a proxy file's folders and file paths are never used).",
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Score a trained proxy: a per-suite, per-ability and per-domain table."""
    from automixer.pipeline.eval import run_eval

    run_eval(
        proxy,
        config_path=config_path,
        suites=suite,
        n_per_suite=n,
        domains=domains,
        json_out=json_out,
        console=console,
        progress=not quiet,
    )


@app.command()
@user_errors
def fit(
    run_dir: RunDirArg,
    all_targets: Annotated[
        bool, typer.Option("--all", help="Print every target and candidate (as in cv.csv).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit surrogates on a sweep and print the cross-validation table."""
    from automixer.pipeline.fit import run_fit

    run_fit(run_dir, console, show_all=all_targets, progress=not quiet)


@app.command()
@user_errors
def solve(run_dir: RunDirArg) -> None:
    """The optimal mixture, with predicted scores and intervals."""
    from automixer.pipeline.solve import run_solve

    run_solve(run_dir, console)


@app.command()
@user_errors
def export(
    run_dir: RunDirArg,
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="yaml, json, megatron, olmo-core, olmo-core-dataset, hf-datasets or "
            "csv (repeatable; default: the config's export.formats).",
        ),
    ] = None,
    paths: Annotated[
        Path | None,
        typer.Option(
            "--paths",
            help="YAML/JSON mapping of domain -> the full run's data path (Megatron prefix "
            "root, OLMo-core folder); adds to the config's export.paths.",
        ),
    ] = None,
) -> None:
    """Write the recipe in a framework's format."""
    from automixer.pipeline.export import run_export

    run_export(run_dir, format, console, paths_file=paths)


@app.command()
@user_errors
def report(run_dir: RunDirArg) -> None:
    """Write a self-contained HTML report with figures."""
    from automixer.pipeline.report import run_report

    run_report(run_dir, console)


@app.command()
@user_errors
def replay(
    runs_table: Annotated[
        Path, typer.Argument(help="CSV or parquet of weights (and metrics).", show_default=False)
    ],
    metrics: MetricsOpt = None,
    id: IdOpt = None,
    domains: DomainsOpt = None,
    target: TargetOpt = None,
    family: FamilyOpt = None,
    model: Annotated[
        str, typer.Option(help="Surrogate: auto, linear, gp, lightgbm, loglinear, ensemble.")
    ] = "auto",
    transform: Annotated[
        str, typer.Option(help="Weight transform: auto, none, sqrt, log.")
    ] = "auto",
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    repeats: Annotated[int, typer.Option(help="Cross-validation repeats.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the solver.")] = 0,
    predict: Annotated[Path | None, typer.Option(help="Mixtures to predict (CSV/parquet).")] = None,
    level: Annotated[
        float,
        typer.Option(
            help="Nominal coverage of the prediction intervals (<t>:lo, <t>:hi): conformal, "
            "from out-of-fold residuals, so they cover a new run's measured value."
        ),
    ] = 0.95,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Measured metrics of the --predict mixtures: prints Spearman per target."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Predictions file (default: OUT_DIR/predictions.csv).")
    ] = None,
    solve: Annotated[bool, typer.Option(help="Solve for the best mixture.")] = True,
    objective: ObjectiveOpt = None,
    method: Annotated[str, typer.Option(help="Solver: exact, topk, tpe, cmaes.")] = "exact",
    direction: Annotated[
        list[str] | None,
        typer.Option(
            "--direction",
            help="TARGET=min|max (names or globs) for targets whose names declare no measure "
            "(_loss, _bpb, _acc, ...); the objective needs every direction.",
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option(help="Where the CV table, predictions and solution go.")
    ] = Path("replay-out"),
    phases: PhasesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fit, cross-validate, predict and solve on runs another system produced."""
    from automixer.pipeline.replay import ReplayOptions, parse_pairs, run_replay

    opts = ReplayOptions(
        model=model,
        transform=transform,
        folds=folds,
        repeats=repeats,
        seed=seed,
        objective=parse_pairs(objective or [], "--objective", True),
        method=method,
        directions=parse_pairs(direction or [], "--direction", False),
        level=level,
        phases=parse_pairs(phases or [], "--phases", True) or None,
    )
    run_replay(
        runs_table,
        metrics=metrics,
        id_column=id,
        domains=domains or [],
        targets=target or [],
        families=parse_pairs(family or [], "--family", False),
        opts=opts,
        predict=predict,
        truth=truth,
        out=out,
        solve=solve,
        out_dir=out_dir,
        console=console,
        progress=not quiet,
    )


@app.command()
@user_errors
def validate(
    recipe: Annotated[Path, typer.Argument(help="A recipe written by `automixer export`.")],
    run_dir: Annotated[
        Path | None,
        typer.Option(help="The sweep's run directory (default: the one holding the recipe)."),
    ] = None,
    width: Annotated[
        float,
        typer.Option(help="Hidden sizes times the proxy's (2: ~4x non-embedding parameters)."),
    ] = 2.0,
    tokens_factor: Annotated[float, typer.Option(help="Training tokens times the proxy's.")] = 4.0,
    seeds: Annotated[
        int,
        typer.Option(
            help="Seeds per mixture: margins are paired by seed and need two or more for a "
            "standard error. Each seed trains every compared mixture once (5 seeds: 25 models "
            "for the solved mixture and four baselines, 5/3 of the time 3 seeds take); with 3, "
            "a true margin of 2 seed sds is called ahead under a third of the time."
        ),
    ] = 5,
    n_per_suite: Annotated[
        int, typer.Option(help="Held-out items per suite (ones the sweep never scored).")
    ] = 100,
    against: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=FILE: also train an alternative (a recipe, or a YAML/JSON mapping of "
            "domain -> weight) and give the solved mixture's paired margin over it. Repeatable."
        ),
    ] = None,
    tier_only: Annotated[
        list[str] | None,
        typer.Option(
            help="SOURCE.TIER: also train the solved mixture with that source restricted to "
            "that tier (its other tiers' weight moved onto it). Repeatable."
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a larger model on the recipe and on the natural and uniform mixtures, compare."""
    from automixer.pipeline.validate import run_validate

    run_validate(
        recipe,
        run_dir=run_dir,
        width=width,
        token_factor=tokens_factor,
        seeds=seeds,
        n_per_suite=n_per_suite,
        against=against,
        tiers_only=tier_only,
        console=console,
        progress=not quiet,
    )


@app.command()
@user_errors
def simulate(
    pool_table: Annotated[
        Path,
        typer.Argument(help="CSV or parquet of trained runs: the pool.", show_default=False),
    ],
    metrics: MetricsOpt = None,
    id: IdOpt = None,
    domains: DomainsOpt = None,
    target: TargetOpt = None,
    family: FamilyOpt = None,
    objective: ObjectiveOpt = None,
    direction: Annotated[
        list[str] | None,
        typer.Option(
            "--direction", help="TARGET=min|max for targets whose names declare no measure."
        ),
    ] = None,
    initial: Annotated[int, typer.Option(help="Runs in the random first batch.")] = 16,
    batch: Annotated[int, typer.Option(help="Runs chosen per round.")] = 8,
    budget: Annotated[int, typer.Option(help="Runs chosen in all.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the first batch and the sampling.")] = 0,
    stop_width: Annotated[
        float | None,
        typer.Option(
            help="Stop before the budget once the optimum's 95% interval is narrower than "
            "this many sds of the objective over the chosen runs (sweep.stop_width)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where chosen.csv and pick.json go.")] = Path(
        "simulate-out"
    ),
    phases: PhasesOpt = None,
) -> None:
    """Run the adaptive sweep's loop on a table of already trained runs (the oracle)."""
    from automixer.pipeline.replay import parse_pairs
    from automixer.pipeline.simulate import run_simulate

    run_simulate(
        pool_table,
        metrics=metrics,
        id_column=id,
        domains=domains or [],
        targets=target or [],
        families=parse_pairs(family or [], "--family", False),
        objective=parse_pairs(objective or [], "--objective", True),
        directions=parse_pairs(direction or [], "--direction", False),
        initial=initial,
        batch=batch,
        budget=budget,
        seed=seed,
        stop_width=stop_width,
        out_dir=out,
        console=console,
        phases=parse_pairs(phases or [], "--phases", True) or None,
    )


@app.command()
@user_errors
def ladder(
    run_dir: RunDirArg,
    rungs: Annotated[
        str,
        typer.Option(
            help="Scales as WIDTHxTOKENS factors of the proxy, smallest first (1.41x2: about "
            "2x the parameters on 2x the tokens; add 2x4 for validate's scale)."
        ),
    ] = "1x1,1.41x2",
    runs: Annotated[
        int,
        typer.Option(
            help="Sweep runs spanning the measured objective, besides the "
            "solved, natural and uniform mixtures."
        ),
    ] = 4,
    seeds: Annotated[int, typer.Option(help="Seeds per mixture and rung.")] = 2,
    n_per_suite: Annotated[
        int, typer.Option(help="Held-out items per suite (ones the sweep never scored).")
    ] = 100,
    quiet: QuietOpt = False,
) -> None:
    """Check that the proxies' ranking of mixtures holds at larger scale (ladder.json)."""
    from automixer.pipeline.ladder import run_ladder

    run_ladder(
        run_dir,
        rungs=rungs,
        runs=runs,
        seeds=seeds,
        n_per_suite=n_per_suite,
        console=console,
        progress=not quiet,
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and `kill` send), raised where the main thread is, so that it
    unwinds as an interrupt does: temporary files removed, finished work kept."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="automixer")


if __name__ == "__main__":  # pragma: no cover
    main()
