"""The report: one self-contained HTML page (figures embedded) for a run directory."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from automixer import plots
from automixer.curation.report import curation_sections
from automixer.modeling import FitInputs, chosen_model
from automixer.rundir import OOF_COLUMNS, SIGNAL_COLUMNS, RunDir
from automixer.runs_table import weight_column
from automixer.schedule import Phases
from automixer.schedule.solve import ConstantSchedule
from automixer.solve import Constraints
from automixer.verdict import Verdict, verdict

COLOURS = {"pass": "#2a7a2a", "caution": "#a66a00", "fail": "#b00020"}


def verdict_html(v: Verdict) -> str:
    """The first screen: the overall verdict and each check with its figure."""
    rows = "".join(
        f"<tr><td>{html.escape(c.name)}</td>"
        f"<td style='color:{COLOURS[c.status]};font-weight:bold'>{c.status}</td>"
        f"<td>{html.escape(c.detail)}</td></tr>"
        for c in v.checks
    )
    return (
        f"<div id=verdict class={v.status}><h2 style='color:{COLOURS[v.status]}'>"
        f"Verdict: {html.escape(v.headline)}</h2>"
        f"<table><tr><th>check</th><th>status</th><th>why</th></tr>{rows}</table></div>"
    )


def _img(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plots.plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(df: pl.DataFrame, digits: int = 4) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows():
        cells = "".join(
            f"<td>{v:.{digits}g}</td>"
            if isinstance(v, float)
            else f"<td>{html.escape(str(v))}</td>"
            for v in r
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def ladder_html(ladder: dict) -> str:
    """The transfer ladder: rank correlations between rungs and the solved mixture's margin."""
    rungs = [r["name"] for r in ladder["rungs"]]
    rows = [("objective", ladder["objective"]), *ladder["targets"].items()]
    pairs = list(ladder["objective"]["rank_correlation"])
    table = pl.DataFrame(
        [
            {
                "target": name,
                **{f"rank corr {p}": row["rank_correlation"][p] for p in pairs},
                **{f"margin @{r}": row["solved_margin"][r] for r in rungs},
                "flips": "yes" if row["flips"] else "",
            }
            for name, row in rows
        ]
    )
    return (
        "<h2>Transfer ladder</h2><p>The same mixtures and seeds trained at each scale "
        "(WIDTHxTOKENS factors of the proxy); margin: the solved mixture over the better of "
        "natural and uniform (positive is better).</p>" + _table(table, digits=3)
    )


def stopped_note(design: Path) -> str:
    """A sentence on an adaptive sweep's early stop (`sweep.stop_width`), or ''."""
    stopped = json.loads(design.read_text()).get("stopped") if design.is_file() else None
    if not stopped:
        return ""
    return (
        f" The sweep stopped before round {stopped['before_round']}, with {stopped['runs']} "
        f"runs: the best objective's 95% interval was {stopped['width']:.2f} times the "
        f"objective's spread over the runs (sweep.stop_width {stopped['stop_width']})."
    )


def rounds_table(data: FitInputs) -> pl.DataFrame:
    """Finished runs per sweep round, with the best measured objective of each."""
    names = dict(zip(data.runs["run_id"], data.runs["name"], strict=True))
    rounds = [
        int(str(names.get(r) or "").removeprefix("adaptive-"))
        if str(names.get(r) or "").startswith("adaptive-")
        else 0
        for r in data.ids
    ]
    values = data.objective().value(data.Y)
    return (
        pl.DataFrame({"round": rounds, "run_id": data.ids, "objective": values})
        .group_by("round")
        .agg(
            pl.len().alias("runs"),
            pl.col("objective").max().alias("best measured objective"),
            pl.col("run_id").sort_by("objective").last().alias("best run"),
        )
        .sort("round")
    )


def schedule_html(schedule: dict) -> str:
    """The schedule: each phase's mixture and the best constant mix as stacked bars and a
    table, and the predicted gain of phasing."""
    columns = {f"{p['name']} ({p['share']:g})": p["weights"] for p in schedule["phases"]}
    columns["best constant"] = schedule["constant"]["weights"]
    gain = schedule["gain"]
    iv = (
        f" [{gain['lo']:+.3f}, {gain['hi']:+.3f}] at {gain['level']:g}"
        if gain.get("lo") is not None
        else ""
    )
    table = pl.DataFrame(
        {"domain": list(schedule["total"])}
        | {c: [w[d] for d in schedule["total"]] for c, w in columns.items()}
    )
    return (
        "<h2>Schedule</h2>"
        + _img(plots.schedule_bars(columns))
        + _table(table)
        + "<p>gain of phasing over the best constant mix: expected <b>"
        f"{gain.get('expected', gain['predicted']):+.3f}</b>{iv} (predicted "
        f"{gain['predicted']:+.3f}; standardised objective; the interval covers "
        f"{html.escape(str(gain.get('covers')))})</p>"
    )


def build_report(rd: RunDir) -> tuple[str, Verdict]:
    """The report of a run directory as one HTML page (figures embedded), and its verdict."""
    # One read of runs.parquet serves the tables, the figures and the refitted surrogate.
    data = FitInputs.load(rd)
    runs = data.runs
    domains = rd.config.domain_names
    sol = rd.solution()
    natural = rd.manifest()["natural_weights"]
    trust = verdict(rd, data.targets)
    sections: list[str] = [verdict_html(trust)]
    obj = sol["objective"]
    iv = f" [{obj['lo']:+.3f}, {obj['hi']:+.3f}]" if obj.get("lo") is not None else ""
    best = sol["best_run"]
    near = sol["nearest_run"]
    summary = [
        f"<li>predicted objective at the optimum: <b>{obj['predicted']:+.3f}</b>; a new run "
        f"there is expected at <b>{obj.get('expected', obj['predicted']):+.3f}</b>{iv} "
        "(standardised, higher is better)</li>",
        f"<li>the interval covers {html.escape(str(sol.get('interval_covers')))}</li>",
        f"<li>best trained run: {html.escape(str(sol.get('best_run_id')))}, measured "
        f"{best['measured_objective']:+.3f}; optimism gap <b>{sol['optimism_gap']:+.3f}</b></li>",
        f"<li>nearest trained run at total-variation distance {near['distance']:.3f} "
        f"(the runs' typical spacing {near['typical_distance']:.3f}; cross-validation "
        f"measured accuracy up to {near.get('held_out_reach') or float('nan'):.3f})</li>",
        f"<li>runs: {int((runs['status'] == 'done').sum())} done, "
        f"{int((runs['status'] == 'failed').sum())} failed</li>",
        f"<li>config hash {rd.config_hash}, commit {html.escape(str(sol.get('commit')))}</li>",
    ]
    warn = "".join(f"<p class=warn>warning: {html.escape(w)}</p>" for w in sol["warnings"])
    sections.append(f"<h2>Summary</h2><ul>{''.join(summary)}</ul>{warn}")
    schedule = sol.get("schedule")  # with phases: each phase's mixture, the best constant mix
    optimal = schedule["total"] if schedule else sol["weights"]
    mixes = {
        "optimal": optimal,
        "natural": natural,
        "uniform": dict.fromkeys(domains, 1 / len(domains)),
    }
    sections.append(
        "<h2>Mixture</h2>"
        + _img(plots.weights_comparison(mixes))
        + _table(
            pl.DataFrame(
                {
                    "domain": domains,
                    "optimal": [optimal[d] for d in domains],
                    "natural": [natural[d] for d in domains],
                }
            )
        )
    )
    if schedule:
        sections.append(schedule_html(schedule))
    sections.extend(curation_sections(rd, mixes, _table))
    pred = pl.DataFrame([{"target": t, **v} for t, v in sol["predicted"].items()])
    level = sol.get("interval_level") or 0.95
    sections.append(
        f"<h2>Predicted scores at the optimum ({level:.0%} interval)</h2>" + _table(pred)
    )
    oof = rd.table("surrogates/oof.parquet", OOF_COLUMNS, "fit")
    if oof is not None:
        targets = [
            t
            for t in oof["target"].unique(maintain_order=True).to_list()
            if t.startswith("ability:") and t.endswith(":bpb")
        ] or oof["target"].unique(maintain_order=True).to_list()[:8]
        sections.append(
            "<h2>Surrogates: out-of-fold predictions</h2>"
            + _img(plots.predicted_vs_actual(oof, targets))
        )
    cv = rd.table("surrogates/cv.csv", ["target", "model", "spearman"], "fit")
    if cv is not None:
        sections.append("<h2>Cross-validation</h2>" + _table(cv))
    signal = rd.table("surrogates/signal.csv", SIGNAL_COLUMNS, "fit")
    if signal is not None:
        sections.append(
            "<h2>Seed noise against the spread between mixtures</h2>"
            + _img(plots.signal_vs_noise(signal))
            + _table(signal)
        )
    model = chosen_model(data)
    objective = data.objective()
    constraints = Constraints.build(domains, prior=natural)
    optimum = np.array([optimal[d] for d in domains])
    head = "<h2>Response curves</h2>"
    if schedule:  # a schedule's curves: constant mixes around the best constant one
        model = ConstantSchedule(model, Phases.of(rd.config))
        optimum = np.array([schedule["constant"]["weights"][d] for d in domains])
        head += "<p>the same mixture in every phase, around the best constant mix</p>"

    def score(W: np.ndarray) -> np.ndarray:
        return objective.value(np.asarray(model.predict(W)).reshape(len(W), -1))

    sections.append(head + _img(plots.response_curves(score, optimum, domains, constraints.upper)))
    if rd.file("ladder.json").is_file():
        sections.append(ladder_html(json.loads(rd.file("ladder.json").read_text())))
    front = rd.pareto()
    if front is not None:
        cols = [c for c in front.columns if c.startswith(("ability:", "suite:", "domain:"))]
        if len(cols) >= 2:
            sections.append("<h2>Pareto front</h2>" + _img(plots.pareto(front, cols[0], cols[1])))
    rounds = rounds_table(data)
    if rounds.height > 1:
        note = stopped_note(rd.file("design.json"))
        sections.append(
            "<h2>Adaptive rounds</h2><p>Round 0 is the space-filling design (with the "
            "replicates); later rounds were chosen by Thompson sampling."
            + note
            + "</p>"
            + _table(rounds)
        )
    sections.append(
        "<h2>Sweep coverage</h2>"
        + _img(
            plots.coverage(  # each domain's weight over the whole run (its phases summed)
                pl.DataFrame(
                    Phases.of(rd.config).totals(
                        runs.select(map(weight_column, rd.config.weight_names)).to_numpy()
                    ),
                    schema=domains,
                    orient="row",
                )
            )
        )
    )
    curves = rd.table("curves.parquet", ["run_id", "step", "loss"], "sweep")
    if curves is not None:
        sections.append("<h2>Proxy loss curves</h2>" + _img(plots.loss_curves(curves)))
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:2px 6px}.warn{color:#a60}img{max-width:100%}"
    )
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>automixer report "
        f"{html.escape(rd.path.name)}</title><style>{style}</style></head><body>"
        f"<h1>automixer report: {html.escape(rd.path.name)}</h1>{''.join(sections)}"
        "</body></html>"
    )
    return page, trust
