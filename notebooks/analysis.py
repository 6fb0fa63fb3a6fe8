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
# surrogates' cross-validation and the seed-noise check, solves for the best mixture and builds
# the recipe, using only the package's API. It reads the run directory and writes nothing into
# it. Set `AUTOMIXER_RUN_DIR` to choose the run directory; by default the newest one under
# `runs/`.

# %%
import os
from pathlib import Path

import polars as pl

from automixer import plots
from automixer.modeling import FitInputs, chosen_model, fit_surrogates, solve_runs
from automixer.pipeline.export import recipe_for
from automixer.recipes import to_megatron
from automixer.rundir import RunDir
from automixer.runs_table import metric_columns, weight_column

run_dir = Path(os.environ.get("AUTOMIXER_RUN_DIR") or
               max(Path("runs").iterdir(), key=lambda p: p.stat().st_mtime))
rd = RunDir.open(run_dir)
domains = rd.config.domain_names
data = FitInputs.load(rd)
runs = data.runs
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
fit = fit_surrogates(data)
plots.signal_vs_noise(fit.signal.filter(pl.col("target").str.starts_with("ability:")))

# %% [markdown]
# ## Surrogates: cross-validation, out-of-fold predictions

# %%
print(f"mean out-of-fold Spearman of the chosen surrogates: {fit.mean_spearman:.3f}")
plots.predicted_vs_actual(fit.oof, [t for t in data.targets if t.startswith("ability:")
                                    and t.endswith(":bpb")])

# %% [markdown]
# ## The optimal mixture

# %%
solved = solve_runs(data, chosen_model(data, fit.choice)).solution
natural = rd.manifest()["natural_weights"]
plots.weights_comparison({"optimal": solved.weights_dict(), "natural": natural})

# %% [markdown]
# ## The recipe

# %%
# The recipe `automixer export` wrote from the saved solution (this notebook's solve above is
# not saved).
recipe = recipe_for(rd)
print(to_megatron(recipe))
pl.DataFrame([{"domain": d, **v} for d, v in recipe["mixture"].items()])
