"""The pipeline's stages as functions the CLI (and notebooks) call: config path in, files out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from automixer.config import Config, load_config
from automixer.data.pipeline import DataBundle, prepare_data
from automixer.errors import AutomixerError
from automixer.rundir import RunDir


def data_bundle(config: Config, *, progress: bool = True) -> DataBundle:
    """The data stage for a config, checked against its evaluation items (every process of a
    sweep builds the same bundle, so they share the cache and agree on what was left out)."""
    from automixer.evals.suites import contamination_items

    return prepare_data(config, eval_texts=contamination_items(config), progress=progress)


def run_data(
    config_path: Path, *, progress: bool = True, console: Console | None = None
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
    rd.write_config()
    rd.write_manifest(bundle.manifest())
    if console is not None:
        print_domains(bundle, console)
        console.print(f"manifest: {rd.file('manifest.json')}")
    return rd, bundle


def print_domains(bundle: DataBundle, console: Console) -> None:
    table = Table(title="domains", title_justify="left")
    for col, justify in [
        ("domain", "left"),
        ("docs", "right"),
        ("train tok", "right"),
        ("val tok", "right"),
        ("bytes/tok", "right"),
        ("natural", "right"),
        ("dups", "right"),
        ("contam. docs", "right"),
        ("eval items found", "right"),
        ("licence", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    natural = bundle.natural_weights()
    for d, v in bundle.domains.items():
        rate = f"{v.contamination_rate:.2%}" if v.checked else "not checked"
        table.add_row(
            d,
            f"{v.train.documents + v.val.documents:,}",
            f"{v.train.tokens:,}",
            f"{v.val.tokens:,}",
            f"{v.bytes_per_token:.2f}",
            f"{natural[d]:.3f}",
            f"{v.duplicates:,}",
            rate,
            f"{len(v.items)}" if v.checked else "-",
            v.licence,
        )
    console.print(table)
    console.print(
        f"tokenizer: {bundle.tokenizer_path} (vocab {bundle.tokenizer.get_vocab_size()}, "
        f"hash {bundle.tokenizer_hash}); eval items checked: {bundle.eval_items_checked}"
    )
    found = bundle.contaminated_items
    if found:
        console.print(
            f"{len(found)} eval items share a word n-gram with the training corpora"
            " and are left out of scoring (listed in manifest.json): "
            + ", ".join(list(found)[:5])
            + (" ..." if len(found) > 5 else "")
        )


def run_all(config_path: Path, *, progress: bool = True, console: Console | None = None) -> RunDir:
    """The whole loop: data, sweep, fit, solve, export, report; prints where everything is."""
    from automixer.export_stage import run_export
    from automixer.fit_stage import run_fit, run_solve
    from automixer.report import run_report
    from automixer.sweep.runner import run_sweep

    out = console or Console(quiet=True)
    run_data(config_path, progress=progress, console=console)
    run_dir = run_sweep(config_path, console=console, progress=progress)
    run_fit(run_dir, out)
    run_solve(run_dir, out)
    run_export(run_dir, None, out)
    run_report(run_dir, out)
    out.print(
        f"run directory: {run_dir} (config.yaml, manifest.json, ledger.db, runs.parquet, "
        "surrogates/, solution.json, pareto.csv, recipes/, report.html)"
    )
    return RunDir.open(run_dir)


def dry_run(config_path: Path, console: Console) -> None:
    """Resolve and check everything a config names without reading or downloading any text:
    the sources (local globs must match), the preset, the suites, and the sweep's size."""
    from automixer.data.sources import resolve_files, source_description, source_licence
    from automixer.evals.suites import SUITES, suite_names

    config = load_config(config_path)
    table = Table(title="domains (dry run: nothing read or downloaded)", title_justify="left")
    for col in ("domain", "source", "limit", "licence"):
        table.add_column(col)
    for i, d in enumerate(config.domains):
        if d.files is not None:
            resolve_files(d, i)
        limit = (
            ", ".join(
                x
                for x in (
                    f"{d.max_bytes:,} bytes" if d.max_bytes else "",
                    f"{d.max_documents:,} docs" if d.max_documents else "",
                )
                if x
            )
            or "all"
        )
        table.add_row(d.name, source_description(d), limit, source_licence(d))
    console.print(table)
    try:
        from proxies.presets import get_preset

        preset = get_preset(config.proxy.preset, vocab_size=config.tokenizer.vocab_size)
    except KeyError as e:
        raise AutomixerError(str(e).strip("'\""), file=config_path, field="proxy.preset") from None
    unknown = [s for s in suite_names(config) if s not in SUITES]
    if unknown:
        raise AutomixerError(
            f"unknown suite '{unknown[0]}'", file=config_path, field="evals.suites"
        )
    counts = preset.param_counts()
    tok = (
        f"given {config.tokenizer.path}"
        if config.tokenizer.path
        else f"byte-level BPE, vocab {config.tokenizer.vocab_size}"
    )
    runs = config.sweep.n_runs + config.sweep.replicates
    packs = -(-runs // config.proxy.pack_size)
    console.print(
        f"tokenizer: {tok}\n"
        f"proxy: {config.proxy.preset}, {counts['active'] / 1e6:.1f}M active / "
        f"{counts['total'] / 1e6:.1f}M total parameters, {config.proxy.tokens:,} tokens each\n"
        f"sweep: {config.sweep.n_runs} mixtures + {config.sweep.replicates} replicates = {runs} "
        f"proxies in {packs} packs of up to {config.proxy.pack_size}; "
        f"{runs * config.proxy.tokens / 1e9:.2f}B training tokens in all\n"
        f"evals: {len(suite_names(config))} suites x {config.evals.n_per_suite} items; "
        f"objective {config.solve.objective}\n"
        f"run directory: {RunDir.for_config(config).path}"
    )
