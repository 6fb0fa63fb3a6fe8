"""Seed noise against the spread between mixtures: is there any signal to fit?

The replicate runs train one mixture with different seeds; their spread is the seed noise. The
spread of a metric across the distinct mixtures must clearly exceed it, or the surrogates fit
noise and the solver's answer means nothing: `signal_table` measures both per target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def signal_table(df: pl.DataFrame, targets: Sequence[str]) -> pl.DataFrame:
    """Per target: seed-noise sd (over the replicate group), spread sd (over distinct mixtures),
    their ratio, and whether the spread is at least twice the noise."""
    done = df.filter(pl.col("status") == "done")
    groups = done.filter(pl.col("replicate_of").is_not_null())["replicate_of"].unique().to_list()
    rows = []
    for t in targets:
        noise = []
        for g in groups:
            group = done.filter((pl.col("run_id") == g) | (pl.col("replicate_of") == g))
            vals = group[t].drop_nulls().to_numpy()
            if len(vals) >= 2:
                noise.append(np.std(vals, ddof=1))
        distinct = done.filter(pl.col("replicate_of").is_null())[t].drop_nulls().to_numpy()
        spread = float(np.std(distinct, ddof=1)) if len(distinct) >= 2 else float("nan")
        sd = float(np.mean(noise)) if noise else float("nan")
        ratio = spread / sd if noise and sd > 0 else float("nan")
        rows.append(
            {
                "target": t,
                "seed_noise_sd": sd,
                "mixture_spread_sd": spread,
                "signal_to_noise": ratio,
                "has_signal": bool(ratio >= 2) if np.isfinite(ratio) else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "target": pl.String,
            "seed_noise_sd": pl.Float64,
            "mixture_spread_sd": pl.Float64,
            "signal_to_noise": pl.Float64,
            "has_signal": pl.Boolean,
        },
    )
