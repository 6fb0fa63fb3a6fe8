"""`automixer data CONFIG [--dry-run]`: build the corpora and print the domains table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from automixer.budget import Supply, config_caps_supply
from automixer.config import Config, field_line, load_config
from automixer.data.bundle import DataBundle
from automixer.data.sources import resolve_files, source_description, source_licence
from automixer.design import sweep_size_warning
from automixer.errors import AutomixerError
from automixer.evals.suites import suite_names
from automixer.evals.tasks import load_jsonl
from automixer.rundir import RunDir
from automixer.sweep.devices import expected_speed
from automixer.sweep.training import data_bundle
from automixer.views import print_domains

FIELDS = set(Config.model_fields)


@contextlib.contextmanager
def located(config_path: Path) -> Iterator[None]:
    """Errors about a config field get the config's file and the field's YAML line."""
    try:
        yield
    except AutomixerError as e:
        if e.file is None and e.field and e.field.split(".")[0].split("[")[0] in FIELDS:
            raise type(e)(
                e.message, file=config_path, field=e.field, line=field_line(config_path, e.field)
            ) from None
        raise


def run_data(
    config_path: Path, *, progress: bool = True, console: Console | None = None
) -> tuple[RunDir, DataBundle]:
    """Build (or reopen) the data of a config; check its anchors fit their budgets; write the
    resolved config and the manifest into its run directory."""
    with located(config_path):
        return _run_data(config_path, progress=progress, console=console)


def _run_data(
    config_path: Path, *, progress: bool, console: Console | None
) -> tuple[RunDir, DataBundle]:
    config = load_config(config_path)
    rd = RunDir.for_config(config)
    bundle = data_bundle(config, progress=progress)
    for name, weights in config.sweep.anchors.items():
        try:
            bundle.loader(weights, config, seed=config.run.seed)
        except AutomixerError as e:
            raise AutomixerError(
                e.message, file=config_path, field=f"sweep.anchors.{name}"
            ) from None
    manifest = bundle.manifest()
    supply = Supply.from_manifest(manifest, config)
    config_caps_supply(supply, config, file=config_path)  # before anything trains
    rd.write_config()
    rd.write_manifest(manifest)
    if console is not None:
        print_domains(bundle, console)
        if supply.sampled():
            console.print(
                f"note: {', '.join(supply.sampled())} were read only up to their limits; the "
                "repetition caps count only what was read (declare domains[i].available_tokens "
                "for the whole source)"
            )
        console.print(f"manifest: {rd.file('manifest.json')}")
    return rd, bundle


def unpinned(config: Config) -> list[str]:
    """Hub datasets read without a pinned revision: a resumed sweep cannot tell whether their
    data changed under it."""
    return [
        f"domains[{i}].hf.revision: '{d.name}' reads {d.hf.path} unpinned; a sweep resumed "
        "later may train on other data without knowing (pin a revision)"
        for i, d in enumerate(config.domains)
        if d.hf is not None
        and d.hf.revision is None
        and not Path(d.hf.path).exists()
        and not d.hf.data_files
    ]


def expected_time(config: Config, tokens: int) -> str:
    """The sweep's training time at the fastest speed measured for its proxy shape (cached by
    `sweep.workers: auto` on a CPU and by the GPU sizing), or how to get one."""
    found = expected_speed(config, config.tokenizer.vocab_size)
    if not found:
        return (
            "expected time: no speed measured yet for this proxy shape (one is cached by the "
            "first sweep on this machine; evaluation not counted)"
        )
    best = found[0]
    seconds = tokens / float(best["tokens_per_s"])
    return (
        f"expected time: {_hours(seconds)} of training on one {best['device']} at "
        f"{float(best['tokens_per_s']):,.0f} tok/s as measured (divide by the devices used; "
        "evaluation not counted)"
    )


def _count(n: float) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M")):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:,.0f}"


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def dry_run(config_path: Path, console: Console) -> None:
    """Resolve and check everything a config names without reading or downloading any text:
    the sources (local globs must match), the preset, the suites, and the sweep's size."""
    with located(config_path):
        _dry_run(config_path, console)


def _dry_run(config_path: Path, console: Console) -> None:
    from proxies.presets import get_preset

    config = load_config(config_path)
    table = Table(title="domains (dry run: nothing read or downloaded)", title_justify="left")
    for col in ("domain", "source", "limit", "licence"):
        table.add_column(col)
    for i, d in enumerate(config.domains):
        if d.files is not None:
            resolve_files(d, i)
        limits = [
            f"{d.max_bytes:,} bytes" if d.max_bytes else "",
            f"{d.max_documents:,} docs" if d.max_documents else "",
        ]
        table.add_row(
            d.name,
            source_description(d),
            ", ".join(x for x in limits if x) or "all",
            source_licence(d),
        )
    console.print(table)
    for path in config.evals.files:  # task files: every line checked now, not after the sweep
        load_jsonl(path)
    try:
        preset = get_preset(config.proxy.preset, vocab_size=config.tokenizer.vocab_size)
    except KeyError as e:
        raise AutomixerError(str(e).strip("'\""), file=config_path, field="proxy.preset") from None
    counts = preset.param_counts()
    tok = (
        f"given {config.tokenizer.path}"
        if config.tokenizer.path
        else f"byte-level BPE, vocab {config.tokenizer.vocab_size}"
    )
    runs = config.sweep.n_runs + config.sweep.replicates
    pack = config.proxy.pack_size
    packs = f"in {-(-runs // pack)} packs of up to {pack}" if pack != "auto" else "(packs: auto)"
    whole_runs = float(runs)
    if config.sweep.design == "branched":  # mains to the boundary, each branch its anneal
        from automixer.schedule import Phases
        from automixer.schedule.branched import branch_cost

        cost = branch_cost(
            Phases.of(config), config.sweep.n_runs, config.sweep.mains, config.sweep.replicates
        )
        whole_runs = cost["branched"]
    tokens = int(whole_runs * config.proxy.tokens)
    flops = tokens * preset.flops_per_token(config.proxy.seq_len)
    console.print(
        f"tokenizer: {tok}\n"
        f"proxy: {config.proxy.preset}, {counts['active'] / 1e6:.1f}M active / "
        f"{counts['total'] / 1e6:.1f}M total parameters, {config.proxy.tokens:,} tokens each\n"
        f"sweep: {config.sweep.n_runs} mixtures + {config.sweep.replicates} replicates = {runs} "
        f"proxies {packs}; {_count(tokens)} training tokens in all, {flops:.2e} training "
        f"FLOPs ({preset.flops_per_token(config.proxy.seq_len) / 1e6:.1f} MFLOP a token)\n"
        f"{expected_time(config, tokens)}\n"
        f"evals: {len(suite_names(config))} suites x {config.evals.n_per_suite} items; "
        f"objective {config.solve.objective}\n"
        f"run directory: {RunDir.for_config(config).path}"
    )
    warning = sweep_size_warning(config.sweep.n_runs, len(config.weight_names))
    if warning:
        console.print(f"[yellow]warning:[/] sweep.n_runs: {warning}")
    for note in unpinned(config):
        console.print(f"[yellow]warning:[/] {note}")
