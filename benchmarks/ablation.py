"""Which parts of the solver's defaults earn their place: solved mixtures with and without the
natural floor, the lower confidence bound and the trust region, trained under `automixer
validate`'s settings beside natural, uniform and the sweep's best measured run.

    python benchmarks/ablation.py RUN_DIR [--seeds 3] [--width 2] [--tokens-factor 4]
                                          [--variants default,mean,no-floor,mean-no-floor]
                                          [--reuse-validation]

RUN_DIR is a finished sweep (`automixer run CONFIG`). Each variant solves the sweep's own
surrogates (`automixer solve`'s code, `solve_section`) with one setting changed:

    default         floor 0.25 of the natural share, LCB at the one-sided 95% quantile, the
                    automatic trust region
    mean            the mean (no LCB, no trust region), the floor kept
    no-floor        the defaults without the floor
    no-lcb          the defaults without the lower confidence bound
    no-trust        the defaults without the trust region
    mean-no-floor   the plain mean optimum: no floor, no LCB, no trust region

Every mixture is trained with the same seeds (the same initialisation and data order per seed)
on `validate`'s wider model for more tokens and scored on held-out items the sweep never
scored; the margins are paired by seed with 95% t intervals (`validate`'s `Margin`). The last
line is JSON.

A mixture is trained once: variants that solve to the same mixture share its models. With
`--reuse-validation`, a mixture that `automixer validate` already trained in RUN_DIR with the
same settings (width, tokens, seeds, items; weights equal to 1e-6, a recipe rounds them to 8
decimals) takes its per-seed objective from validation.json instead of being trained again.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from automixer.modeling import (
    FitInputs,
    chosen_model,
    conformal,
    constraints_for,
    solve_section,
)
from automixer.pipeline.validate import (
    compared_mixtures,
    objective_value,
    paired_margin,
    scaled_model,
    train_mixtures,
    validation_tasks,
)
from automixer.rundir import RunDir
from automixer.sweep.training import data_bundle

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "mean": {"lcb_k": 0.0, "trust_region": None},
    "no-floor": {"natural_floor": 0.0},
    "no-lcb": {"lcb_k": 0.0},
    "no-trust": {"trust_region": None},
    "mean-no-floor": {"lcb_k": 0.0, "trust_region": None, "natural_floor": 0.0},
}


def solved(data: FitInputs, names: list[str]) -> dict[str, dict[str, Any]]:
    cfg = data.rd.config
    model, intervals = chosen_model(data), conformal(data)
    objective = data.objective()
    out = {}
    for name in names:
        section = cfg.solve.model_copy(update=VARIANTS[name])
        constraints = constraints_for(data, solve=section)  # `automixer solve`'s, groups too
        sol = solve_section(
            section, model, objective, constraints, data.X, data.Y, intervals, cfg.run.seed
        )
        out[name] = {
            "weights": sol.weights_dict(),
            "predicted": sol.objective,
            "expected": sol.expected,
            "objective_sd": sol.objective_sd,
            "nearest_distance": sol.nearest_distance,
        }
        print(
            f"{name}: "
            + ", ".join(f"{d} {w:.3f}" for d, w in sol.weights_dict().items())
            + f"; predicted {sol.objective:+.3f}, sd {sol.objective_sd or 0:.3f}, nearest run "
            f"{sol.nearest_distance:.3f}",
            flush=True,
        )
    return out


def same_mixture(a: dict[str, float], b: dict[str, float], tol: float = 1e-6) -> bool:
    """Whether two mixtures give every domain the same weight (to `tol`)."""
    return all(abs(a.get(d, 0.0) - b.get(d, 0.0)) <= tol for d in set(a) | set(b))


def validated(
    rd: RunDir, settings: dict[str, Any], mixtures: dict[str, dict[str, float]]
) -> dict[str, list[float]]:
    """Per-seed objectives from RUN_DIR's validation.json for the `mixtures` it trained with
    the same `settings` (empty when there is none or its settings differ)."""
    path = rd.file("validation.json")
    if not path.is_file():
        return {}
    v = json.loads(path.read_text())
    s = v.get("settings", {})
    same = (
        s.get("width") == settings["width"]
        and s.get("token_factor") == settings["tokens_factor"]
        and s.get("seeds") == settings["seeds"]
        and s.get("n_per_suite") == settings["n_per_suite"]
    )
    if not same:
        print(f"{path}: other settings ({s}); nothing reused", flush=True)
        return {}
    per_seed = v["objective"]["per_seed"]
    out = {}
    for name, weights in mixtures.items():
        hit = next((m for m, w in v["mixtures"].items() if same_mixture(weights, w)), None)
        if hit is not None:
            out[name] = list(per_seed[hit])
            print(f"{name}: the models of validation.json's '{hit}'", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--width", type=float, default=2.0)
    ap.add_argument("--tokens-factor", type=float, default=4.0)
    ap.add_argument("--n-per-suite", type=int, default=100)
    ap.add_argument("--variants", default="default,mean,no-floor,mean-no-floor")
    ap.add_argument(
        "--reuse-validation",
        action="store_true",
        help="take mixtures `automixer validate` trained with these settings from validation.json",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from proxies.presets import get_preset

    t0 = time.perf_counter()
    rd = RunDir.open(args.run_dir)
    config = rd.config
    data = FitInputs.load(rd)
    objective = data.objective()
    variants = solved(data, args.variants.split(","))
    bundle = data_bundle(config, progress=False)
    base = compared_mixtures(bundle, variants["default"]["weights"], data)
    mixtures = {f"solved {k}": v["weights"] for k, v in variants.items()}
    mixtures |= {k: v for k, v in base.items() if k != "solved"}
    tasks = validation_tasks(config, set(bundle.contaminated_items), args.n_per_suite)
    proxy = get_preset(config.proxy.preset, vocab_size=bundle.tokenizer.get_vocab_size())
    seeds = [config.run.seed + k for k in range(args.seeds)]
    tokens = int(config.proxy.tokens * args.tokens_factor)
    obj: dict[str, list[float]] = {}
    if args.reuse_validation:
        obj |= validated(
            rd,
            {
                "width": args.width,
                "tokens_factor": args.tokens_factor,
                "seeds": seeds,
                "n_per_suite": args.n_per_suite,
            },
            mixtures,
        )
    for name, weights in mixtures.items():  # a pack per mixture: memory stays a validate's
        if name in obj:
            continue
        twin = next((m for m in obj if same_mixture(weights, mixtures[m])), None)
        if twin is not None:
            obj[name] = obj[twin]
            print(f"{name}: the same mixture as {twin}", flush=True)
            continue
        per_run = train_mixtures(
            rd,
            bundle,
            scaled_model(proxy, args.width),
            {name: weights},
            seeds,
            tokens,
            tasks,
            folder=rd.file("ablation"),
            progress=False,
            label=name,
        )
        obj[name] = [objective_value(objective, v) for v in per_run[name]]
        print(f"trained {name} ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
    result: dict[str, Any] = {
        "run_dir": str(args.run_dir),
        "settings": vars(args) | {"run_dir": str(args.run_dir), "tokens": tokens},
        "variants": variants,
        "objective": {m: float(np.mean(v)) for m, v in obj.items()},
        "per_seed": obj,
        "margins": {},
    }
    console = Console(width=120)
    for v in variants:
        for b in ("natural", "uniform", "best run", *(f"solved {w}" for w in variants if w != v)):
            if b == f"solved {v}":
                continue
            m = paired_margin(obj[f"solved {v}"], obj[b])
            result["margins"][f"{v} - {b}"] = m.to_dict()
            console.print(f"solved {v} - {b}: {m.describe()}")
    result["seconds"] = time.perf_counter() - t0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
