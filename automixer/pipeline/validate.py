"""`automixer validate RECIPE`: does the solved mixture win on a larger model?

A larger model than the proxies (wider: `width` times the proxy's hidden sizes, which is about
width**2 times its non-embedding parameters) is trained for `token_factor` times the proxy's
tokens on the recipe's mixture and, with identical settings (same initialisation, seeds,
schedule), on the natural and the uniform mixtures. All of them are scored on held-out items of
the same suites (items the sweep never scored, none found in the training corpora) and on the
held-out domain text, and compared on the objective the recipe was solved for, standardised as
the solver standardised it (by the sweep's runs).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from automixer.config import Config, dump_config
from automixer.errors import AutomixerError
from automixer.evals.scoring import items_per_suite
from automixer.evals.suites import config_tasks, item_key
from automixer.io import atomic_write_json
from automixer.modeling import FitInputs
from automixer.recipes import load_recipe, recipe_weights
from automixer.rundir import RunDir
from automixer.schedule import Phases
from automixer.solve.objective import Objective, lower_is_better
from automixer.sweep.training import data_bundle, keep_proxy, train_and_score, train_config
from automixer.views import metrics_table, progress_bar

BASELINES = ("natural", "uniform", "best run")
"""What the solved mixture is compared with: the natural and uniform mixtures, and the sweep's
best measured mixture (what a user gets with no surrogate at all)."""
PRIMARY = ("natural", "uniform")
BEST_CONSTANT = "best constant"
"""With phases: the best constant mix the solver found, trained beside the schedule."""
"""The baselines the solved mixture must beat; against the best run it must not lose."""


LEVEL = 0.05
"""The family-wise error rate of a validation's verdicts (Holm's correction over the
baselines it compares with)."""
FLATTERING = (
    "the best run was chosen by its own (noisy) sweep measurement and is retrained here: it "
    "regresses toward its mean, so this comparison flatters the solved mixture"
)


@dataclass(frozen=True)
class Margin:
    """The solved mixture's objective minus a baseline's, paired by seed (the same
    initialisation and data order), with its standard error over seeds. `adjusted_p`, when
    set, is the p-value after the correction for the other comparisons of the same
    validation (`holm`), and the verdict uses it."""

    per_seed: list[float]
    adjusted_p: float | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))

    @property
    def se(self) -> float | None:
        n = len(self.per_seed)
        return float(np.std(self.per_seed, ddof=1) / math.sqrt(n)) if n > 1 else None

    @property
    def half_width(self) -> float | None:
        """Half the 95% interval of the mean margin (one comparison alone): Student's t with
        n - 1 degrees of freedom (2.78 standard errors with 5 seeds, 4.30 with 3)."""
        from scipy.stats import t

        n = len(self.per_seed)
        return float(t.ppf(0.975, n - 1) * self.se) if self.se is not None else None

    @property
    def p_value(self) -> float | None:
        """The two-sided paired t-test's p-value of a zero margin (None with one seed; 0 or 1
        when every seed's margin is the same)."""
        from scipy.stats import t

        se = self.se
        if se is None:
            return None
        if se == 0:
            return 0.0 if self.mean != 0 else 1.0
        return float(2 * t.sf(abs(self.mean) / se, len(self.per_seed) - 1))

    @property
    def verdict(self) -> str:
        """'ahead' or 'behind' when the margin differs from 0 at the 5% level (after Holm's
        correction when `adjusted_p` is set, else its own 95% t interval), else 'not
        distinguishable' (always so with one seed: there is no noise estimate)."""
        p = self.adjusted_p if self.adjusted_p is not None else self.p_value
        if p is None or p >= LEVEL:
            return "not distinguishable"
        return "ahead" if self.mean > 0 else "behind"

    def describe(self) -> str:
        if self.se is None:
            return f"{self.mean:+.3f} (one seed: no standard error; use --seeds 3 or more)"
        h = self.half_width
        assert h is not None
        adjusted = f", Holm-adjusted p {self.adjusted_p:.3f}" if self.adjusted_p is not None else ""
        return (
            f"{self.mean:+.3f} (95% t interval [{self.mean - h:+.3f}, {self.mean + h:+.3f}] over "
            f"{len(self.per_seed)} seeds, p {self.p_value:.3f}{adjusted}): {self.verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "se": self.se,
            "half_width": self.half_width,
            "p_value": self.p_value,
            "adjusted_p": self.adjusted_p,
            "per_seed": self.per_seed,
            "verdict": self.verdict,
        }


def paired_margin(solved: list[float], baseline: list[float]) -> Margin:
    return Margin([a - b for a, b in zip(solved, baseline, strict=True)])


def holm(margins: dict[str, Margin]) -> dict[str, Margin]:
    """The margins with Holm's step-down adjusted p-values: the chance that any of the
    verdicts says 'ahead' or 'behind' when every mixture is as good as the solved one stays at
    `LEVEL` however many baselines are compared (uncorrected, four would say so about 19% of
    the time). Margins without a p-value (one seed) are left as they are."""
    tested = sorted(
        ((m.p_value, name) for name, m in margins.items() if m.p_value is not None),
        key=lambda pair: pair[0],
    )
    out = dict(margins)
    running = 0.0
    for i, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - i) * p))
        out[name] = Margin(margins[name].per_seed, running)
    return out


def _run_dir_of(recipe: Path, run_dir: Path | None) -> RunDir:
    """The sweep's run directory: given, or the folder above the recipe's (recipes/ lives in
    the run directory)."""
    if run_dir is not None:
        return RunDir.open(run_dir)
    for folder in (recipe.resolve().parent, recipe.resolve().parent.parent):
        if (folder / "config.yaml").is_file():
            return RunDir.open(folder)
    raise AutomixerError(
        "no run directory next to the recipe; give the sweep's with --run-dir", file=recipe
    )


def scaled_model(cfg: Any, width: float) -> Any:
    """The proxy architecture with hidden sizes times `width` (head count kept; the head
    dimension rounded to an even number)."""
    head_dim = max(2, 2 * round(cfg.head_dim * width / 2))
    d_model = head_dim * cfg.n_heads
    return dataclasses.replace(
        cfg,
        d_model=d_model,
        expert_hidden=max(1, round(cfg.expert_hidden * width)),
        dense_hidden=max(1, round(cfg.dense_hidden * width)),
    )


def validation_tasks(config: Config, left_out: set[str], n_per_suite: int) -> list[Any]:
    """Items of the config's suites that the sweep did not score and training does not hold."""
    scored = {item_key(t) for t in config_tasks(config, exclude=left_out)}
    held = config.model_copy(
        update={"evals": config.evals.model_copy(update={"n_per_suite": n_per_suite})}
    )
    return config_tasks(held, exclude=left_out | scored)


def compared_mixtures(
    bundle: Any, solved: dict[str, float], data: FitInputs
) -> dict[str, dict[str, float]]:
    """The solved mixture and the baselines it is compared with: natural, uniform, and the
    sweep's best measured run (by the objective). With phases every one is a schedule over
    `domain@phase` (`solved` is): natural and uniform the same mixture in every phase, and the
    best constant mix the solver found (solution.json) is added beside them."""
    config = data.rd.config
    phases = Phases.of(config)
    names = bundle.names
    best = int(np.argmax(data.objective().value(data.Y)))
    out = {
        "solved": {d: float(solved.get(d, 0.0)) for d in config.weight_names},
        "natural": phases.constant(bundle.natural_weights()),
        "uniform": phases.constant(dict.fromkeys(names, 1 / len(names))),
        "best run": dict(zip(config.weight_names, map(float, data.X[best]), strict=True)),
    }
    if phases.phased:
        constant = data.rd.solution().get("schedule", {}).get("constant", {}).get("weights")
        if isinstance(constant, dict):
            out[BEST_CONSTANT] = phases.constant(constant)
    return out


def recipe_schedule(recipe: dict[str, Any], config: Config, file: Path) -> dict[str, float]:
    """A recipe's mixture as the config's weights: with phases, its phases' mixtures (a
    recipe without the config's phases is an error naming the file)."""
    phases = Phases.of(config)
    if not phases.phased:
        return recipe_weights(recipe)
    got = {p.get("name"): p.get("weights") for p in recipe.get("phases") or []}
    if list(got) != list(phases.names):
        raise AutomixerError(
            f"the recipe's phases ({', '.join(map(str, got)) or 'none'}) are not the config's "
            f"({', '.join(phases.names)})",
            file=file,
            field="phases",
        )
    return phases.flat(got)


def tier_only(solved: dict[str, float], config: Config, tier: str) -> dict[str, float]:
    """The solved mixture (a schedule: in every phase) with a tiered source restricted to one
    tier: the weight of the source's other tiers moves onto `tier` (`science.high`), the rest
    unchanged."""
    phases = Phases.of(config)
    return phases.flat(
        {p: _tier_only(m, config, tier) for p, m in phases.per_phase(solved).items()}
    )


def _tier_only(solved: dict[str, float], config: Config, tier: str) -> dict[str, float]:
    section = next((d for d in config.domains if d.name == tier), None)
    if section is None or section.tier is None:
        tiers = [d.name for d in config.domains if d.tier is not None]
        raise AutomixerError(
            f"'{tier}' is not a tier of a source (tiers: {', '.join(tiers) or 'none'})",
            field="--tier-only",
        )
    siblings = [d.name for d in config.domains if d.tier and d.tier.source == section.tier.source]
    out = dict(solved)
    out[tier] = sum(solved.get(d, 0.0) for d in siblings)
    for d in siblings:
        if d != tier:
            out[d] = 0.0
    return out


def alternative_mixture(
    spec: str, names: list[str], config: Config | None = None
) -> tuple[str, dict[str, float]]:
    """`NAME=FILE`: a recipe written by `automixer export`, or a YAML/JSON mapping of domain
    to weight, compared with the solved mixture under that name. With the `config`'s phases, a
    recipe's phases are trained as they are and a mapping as the same mixture in every
    phase."""
    import yaml

    from automixer.mixture import WeightIssue, check_weights

    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise AutomixerError(f"expected NAME=FILE, got '{spec}'", field="--against")
    file = Path(path.strip())
    if not file.is_file():
        raise AutomixerError("file not found", file=file, field="--against")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise AutomixerError(f"cannot read: {e}", file=file, field="--against") from None
    phases = Phases.of(config) if config is not None else None
    if isinstance(data, dict) and "automixer_recipe" in data:
        recipe = load_recipe(file)
        if phases is not None and phases.phased and recipe.get("phases"):
            assert config is not None
            return name.strip(), recipe_schedule(recipe, config, file)
        weights = recipe_weights(recipe)
    elif isinstance(data, dict):
        weights = data
    else:
        raise AutomixerError(
            "expected a recipe or a mapping of domain -> weight", file=file, field="--against"
        )
    try:
        check_weights(weights, names)
    except WeightIssue as e:
        raise AutomixerError(str(e), file=file, field="--against") from None
    mixture = {d: float(weights.get(d, 0.0)) for d in names}
    return name.strip(), phases.constant(mixture) if phases is not None else mixture


def objective_value(objective: Objective, values: dict[str, float]) -> float:
    """The objective (standardised as the solver standardised it) of one model's metrics."""
    y = np.array([values.get(t, math.nan) for t in objective.targets])
    y = np.where(objective.weights > 0, y, objective.center)
    return float(objective.value(y))


def train_mixtures(
    rd: RunDir,
    bundle: Any,
    model_cfg: Any,
    mixtures: dict[str, dict[str, float]],
    seeds: list[int],
    tokens: int,
    tasks: list[Any],
    *,
    folder: Path,
    progress: bool = True,
    label: str = "training",
) -> dict[str, list[dict[str, float]]]:
    """Train `model_cfg` on every mixture with every seed (one pack: the same initialisation
    per seed for every mixture), score each on `tasks` and the held-out domains, keep each model
    in `folder`; the metrics per mixture, in seed order. A mixture the loader cannot serve at
    `tokens`, or a model that fails, is an error."""
    config = rd.config
    runs = [(m, s) for m in mixtures for s in seeds]
    loaders = []
    for m, s in runs:
        try:
            loaders.append(bundle.loader(mixtures[m], config, seed=s, tokens=tokens))
        except AutomixerError as e:
            raise AutomixerError(f"the {m} mixture: {e.message}", field="--tokens-factor") from None
    steps = loaders[0].steps
    bar = progress_bar("{task.completed}/{task.total} steps {task.fields[info]}", progress)
    with bar:
        job = bar.add_task(label, total=steps, info="")

        def on_log(step: int, losses: list[float], rate: float) -> None:
            bar.update(job, completed=step + 1, info=f"{rate:,.0f} tok/s")

        scored = train_and_score(
            config,
            bundle,
            model_cfg,
            loaders,
            [s for _, s in runs],  # the same initialisation for every mixture
            tasks,
            tcfg=train_config(config, log_every=max(1, steps // 50)),
            on_log=on_log,
        )
    config_yaml = dump_config(config)
    left_out_keys = sorted(bundle.contaminated_items)
    per_run: dict[str, list[dict[str, float]]] = {m: [] for m in mixtures}
    for (m, s), sc in zip(runs, scored, strict=True):
        r = sc.result
        if not sc.ok:
            raise AutomixerError(f"the {m} model (seed {s}) failed: {r.error}")
        per_run[m].append(sc.metrics)
        meta = {
            **rd.provenance(),
            "name": m,
            "seed": s,
            "tokens": r.tokens,
            "weights": mixtures[m],
            "left_out": left_out_keys,
        }
        keep_proxy(folder / f"{m}-seed{s}.pt", sc, model_cfg, bundle, config_yaml, meta)
    return per_run


def run_validate(
    recipe_path: Path,
    *,
    run_dir: Path | None = None,
    width: float = 2.0,
    token_factor: float = 4.0,
    seeds: int = 5,
    n_per_suite: int = 100,
    against: list[str] | None = None,
    tiers_only: list[str] | None = None,
    console: Console,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the recipe's mixture, the baselines (`compared_mixtures`) and any alternatives
    (`--against NAME=FILE`, `--tier-only SOURCE.TIER`) at a larger scale, paired by seed."""
    from proxies.presets import get_preset

    recipe = load_recipe(recipe_path)
    rd = _run_dir_of(recipe_path, run_dir)
    config = rd.config
    if recipe.get("config_hash") not in (None, rd.config_hash):
        console.print(
            f"[yellow]warning:[/] the recipe comes from config {recipe['config_hash']}, "
            f"the run directory is {rd.config_hash}"
        )
    if width <= 0 or token_factor <= 0 or seeds < 1 or n_per_suite < 1:
        raise AutomixerError(
            "--width and --tokens-factor must be > 0, --seeds and --n-per-suite >= 1"
        )
    data = FitInputs.load(rd)
    objective = data.objective()
    bundle = data_bundle(config, progress=progress)
    unknown = [d for d in recipe["mixture"] if d not in bundle.domains]
    if unknown:
        raise AutomixerError(
            f"domain '{unknown[0]}' is not in the sweep's config", file=recipe_path, field="mixture"
        )
    mixtures = compared_mixtures(bundle, recipe_schedule(recipe, config, recipe_path), data)
    alternatives: list[str] = [m for m in mixtures if m == BEST_CONSTANT]
    for tier in tiers_only or []:
        name = f"{tier} only"
        mixtures[name] = tier_only(mixtures["solved"], config, tier)
        alternatives.append(name)
    for spec in against or []:
        name, weights = alternative_mixture(spec, bundle.names, config)
        if name in mixtures:
            raise AutomixerError(f"the name '{name}' is taken", field="--against")
        mixtures[name] = weights
        alternatives.append(name)
    tokens = int(config.proxy.tokens * token_factor)
    seed_list = [config.run.seed + k for k in range(seeds)]
    left_out = set(bundle.contaminated_items)
    tasks = validation_tasks(config, left_out, n_per_suite)
    proxy_cfg = get_preset(config.proxy.preset, vocab_size=bundle.tokenizer.get_vocab_size())
    model_cfg = scaled_model(proxy_cfg, width)
    params, proxy_params = model_cfg.param_counts(), proxy_cfg.param_counts()
    console.print(
        f"validating {recipe_path}: {len(mixtures) * seeds} models of {params['active']:,} "
        f"active parameters ({params['active'] / proxy_params['active']:.1f}x the proxy; "
        "non-embedding "
        f"{params['non_embedding_active'] / proxy_params['non_embedding_active']:.1f}x), "
        f"{tokens:,} tokens each ({token_factor:g}x); {len(tasks)} held-out items"
    )
    t0 = time.perf_counter()
    per_run = train_mixtures(
        rd,
        bundle,
        model_cfg,
        mixtures,
        seed_list,
        tokens,
        tasks,
        folder=rd.file("validate"),
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    mean = {m: {k: float(np.mean([v[k] for v in vs])) for k in vs[0]} for m, vs in per_run.items()}
    missing = [
        t
        for t, w in zip(objective.targets, objective.weights, strict=True)
        if w > 0 and t not in mean["solved"]
    ]
    if missing:
        raise AutomixerError(f"the validation models have no '{missing[0]}' to score")

    obj_runs = {m: [objective_value(objective, v) for v in vs] for m, vs in per_run.items()}
    scores = {m: float(np.mean(v)) for m, v in obj_runs.items()}
    columns = {m: {"objective": scores[m], **mean[m]} for m in mixtures}
    best = {}
    for k in columns["solved"]:
        ranked = sorted(columns, key=lambda m, k=k: columns[m][k])  # type: ignore[misc]
        best[k] = ranked[0] if lower_is_better(k) else ranked[-1]
    counts = items_per_suite(tasks)
    console.print(
        metrics_table(columns, title="validation (held-out items)", best=best, counts=counts)
    )
    compared = [*BASELINES, *alternatives]
    comparisons = holm({b: paired_margin(obj_runs["solved"], obj_runs[b]) for b in compared})
    console.print(
        "objective (higher is better, in the sweep's standard units): "
        f"solved {scores['solved']:+.3f}" + "".join(f", {b} {scores[b]:+.3f}" for b in compared)
    )
    for b, c in comparisons.items():
        console.print(f"solved - {b}: {c.describe()}")
    console.print(
        f"(verdicts at a 5% family-wise level over {len(compared)} comparisons; {FLATTERING})"
    )
    wins = all(comparisons[b].verdict == "ahead" for b in PRIMARY)
    wins = wins and comparisons["best run"].verdict != "behind"
    console.print(
        "the solved mixture is ahead of natural and uniform (95% t intervals above 0) and not "
        "behind the sweep's best run"
        if wins
        else "the solved mixture is NOT shown ahead: "
        + ", ".join(f"{comparisons[b].verdict} vs {b}" for b in BASELINES)
    )
    out = {
        **rd.provenance(),
        "recipe": str(recipe_path),
        "settings": {
            "width": width,
            "token_factor": token_factor,
            "tokens": tokens,
            "seeds": seed_list,
            "n_per_suite": n_per_suite,
            "items": counts,
            "item_keys": sorted(item_key(t) for t in tasks),
            "params": params,
            "proxy_params": proxy_params,
            "seconds": round(seconds, 1),
        },
        "mixtures": mixtures,
        "objective": {
            "weights": dict(config.solve.objective),
            "values": scores,
            "per_seed": obj_runs,
        },
        "metrics": mean,
        "solved_wins": wins,
        "alternatives": alternatives,
        "margins": {b: c.to_dict() for b, c in comparisons.items()},
        "multiplicity": f"Holm's correction over the {len(compared)} comparisons (family-wise 5%)",
        "notes": {"best run": FLATTERING},
    }
    path = rd.file("validation.json")
    atomic_write_json(path, out)
    console.print(
        f"validation: {path}; models: {rd.file('validate')}/ (score one with `automixer eval`)"
    )
    return out
