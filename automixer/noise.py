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
    """Per target: the seed noise sd, pooled over every replicate group (each group's squared
    deviations from its own mean, over the groups' summed degrees of freedom), the spread sd
    over distinct mixtures, their ratio with its 90% interval (the ratio of two variance
    estimates is F-distributed: 3.38 from one group of 4 runs is anywhere in [1.2, 5.5]), and
    whether the spread is at least twice the noise."""
    from scipy.stats import f as fisher

    done = df.filter(pl.col("status") == "done")
    groups = done.filter(pl.col("replicate_of").is_not_null())["replicate_of"].unique().to_list()
    rows = []
    for t in targets:
        squares, dof = 0.0, 0
        for g in groups:
            group = done.filter((pl.col("run_id") == g) | (pl.col("replicate_of") == g))
            vals = group[t].drop_nulls().to_numpy()
            if len(vals) >= 2:
                squares += float(((vals - vals.mean()) ** 2).sum())
                dof += len(vals) - 1
        distinct = done.filter(pl.col("replicate_of").is_null())[t].drop_nulls().to_numpy()
        spread = float(np.std(distinct, ddof=1)) if len(distinct) >= 2 else float("nan")
        sd = float(np.sqrt(squares / dof)) if dof else float("nan")
        ratio = spread / sd if dof and sd > 0 else float("nan")
        lo = hi = float("nan")
        if np.isfinite(ratio):
            df_s = len(distinct) - 1
            lo = ratio / float(np.sqrt(fisher.ppf(0.95, df_s, dof)))
            hi = ratio / float(np.sqrt(fisher.ppf(0.05, df_s, dof)))
        rows.append(
            {
                "target": t,
                "seed_noise_sd": sd,
                "noise_dof": dof,
                "mixture_spread_sd": spread,
                "signal_to_noise": ratio,
                "signal_to_noise_lo": lo,
                "signal_to_noise_hi": hi,
                "has_signal": bool(ratio >= 2) if np.isfinite(ratio) else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "target": pl.String,
            "seed_noise_sd": pl.Float64,
            "noise_dof": pl.Int64,
            "mixture_spread_sd": pl.Float64,
            "signal_to_noise": pl.Float64,
            "signal_to_noise_lo": pl.Float64,
            "signal_to_noise_hi": pl.Float64,
            "has_signal": pl.Boolean,
        },
    )
