# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # automixer: analysing a sweep
#
# Loads a run directory written by `automixer run` (or `sweep`), shows the sweep, the
# surrogates' cross-validation and the seed-noise check, solves for the best mixture and exports
# the recipe, using only the package's API. Set `AUTOMIXER_RUN_DIR` to choose the run
# directory; by default the newest one under `runs/`.

# %%
import os
from pathlib import Path

import polars as pl

from automixer import plots
from automixer.fit_stage import run_fit, run_solve
from automixer.noise import signal_table
from automixer.recipes import load_recipe
from automixer.export_stage import run_export
from automixer.rundir import RunDir
from automixer.runs_table import fit_arrays, metric_columns, read_runs, weight_column
from rich.console import Console

run_dir = Path(os.environ.get("AUTOMIXER_RUN_DIR") or
               max(Path("runs").iterdir(), key=lambda p: p.stat().st_mtime))
rd = RunDir.open(run_dir)
domains = rd.config.domain_names
runs = read_runs(rd.file("runs.parquet"), domains)
console = Console()
print(run_dir, runs.height, "runs")

# %% [markdown]
# ## The sweep

# %%
weights = runs.select([weight_column(d) for d in domains]).rename(
    {weight_column(d): d for d in domains})
plots.coverage(weights)

# %%
runs.select("run_id", "name", "status", "loss_first", "loss_last",
            *[c for c in metric_columns(runs) if c.startswith("ability:")])

# %% [markdown]
# ## Is there signal? Seed noise against the spread between mixtures

# %%
X, Y, targets, ids = fit_arrays(runs, domains)
signal = signal_table(runs, targets)
plots.signal_vs_noise(signal.filter(pl.col("target").str.starts_with("ability:")))

# %% [markdown]
# ## Surrogates: cross-validation, out-of-fold predictions

# %%
run_fit(run_dir, console)
oof = pl.read_parquet(rd.file("surrogates") / "oof.parquet")
plots.predicted_vs_actual(oof, [t for t in targets if t.startswith("ability:")
                                and t.endswith(":bpb")])

# %% [markdown]
# ## The optimal mixture

# %%
solution = run_solve(run_dir, console)
natural = {d: float(w) for d, w in zip(domains, X.mean(0), strict=True)}
plots.weights_comparison({"optimal": solution.weights_dict(), "runs' mean": natural})

# %% [markdown]
# ## The recipe

# %%
paths = run_export(run_dir, ["yaml", "megatron"], console)
recipe = load_recipe(rd.file("recipes") / "recipe.yaml")
pl.DataFrame([{"domain": d, **v} for d, v in recipe["mixture"].items()])
