"""Surrogates by name, honest cross-validation, and `auto`: the best surrogate per target.

Cross-validation is repeated K-fold: every run is predicted by a model that never saw it
(out-of-fold), the Spearman correlation and RMSE between out-of-fold predictions and actual
values are computed per repeat, and their mean and spread over repeats form the CV table.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from automixer.registry import SURROGATES, load, unknown
from automixer.surrogates import progress
from automixer.surrogates.ensemble import BootstrapEnsemble
from automixer.surrogates.gp import per_target_kernels
from automixer.surrogates.intervals import Conformal


def make_surrogate(name: str, transform: str | None = None, **params: Any) -> Any:
    """A surrogate by registry name; `transform` overrides the model's own default."""
    if name == "auto":
        return AutoSurrogate(weight_transform=transform or "auto", **params)
    if name not in SURROGATES:
        raise ValueError(unknown("surrogate", name, ["auto", *SURROGATES]))
    kw = dict(params)
    if transform not in (None, "auto"):
        kw["weight_transform"] = transform
    return load(SURROGATES[name])(**kw)


SELECTED = "auto"
"""The CV table's name for the per-target choice itself, scored honestly (see
`cross_validate`)."""


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) <= 1e-12 * (1 + np.abs(a).max()) or np.ptp(b) <= 1e-12 * (1 + np.abs(b).max()):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's warning for (nearly) constant input
        return float(spearmanr(a, b).statistic)


def mixture_groups(X: np.ndarray, decimals: int = 9) -> np.ndarray:
    """A group id per run: runs with the same mixture (seed replicates, repeated rows of a
    published table) share one, so cross-validation never splits them."""
    _, inverse = np.unique(
        np.round(np.asarray(X, dtype=np.float64), decimals), axis=0, return_inverse=True
    )
    return inverse.reshape(-1)


def grouped_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold id per run: whole groups, shuffled by `seed`, dealt into `folds` folds."""
    uniq = np.unique(groups)
    if len(uniq) < folds:
        raise ValueError(f"{len(uniq)} distinct mixtures are too few for {folds}-fold CV")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    fold_of_group[order] = np.arange(len(uniq)) % folds
    return fold_of_group[np.searchsorted(uniq, groups)]


@dataclass
class CVResult:
    table: pl.DataFrame
    """One row per (target, model): spearman, spearman_sd, rmse, mae, over repeats; with more
    than one model also model 'auto', the per-target choice scored honestly."""
    oof: dict[str, np.ndarray]
    """model -> out-of-fold predictions (n_runs, n_targets), averaged over repeats."""
    oof_runs: dict[str, np.ndarray] = field(default_factory=dict)
    """model -> out-of-fold predictions of each repeat (repeats, n_runs, n_targets)."""
    folds: np.ndarray | None = None
    """The fold of every run in each repeat (repeats, n_runs)."""
    templates: dict[str, Any] = field(default_factory=dict)
    """model -> what the deployed refit starts from (see `fold_template`); for a GP, the
    kernels learned on all runs, so that refitting the choice on all runs learns nothing
    again (the folds never start from them, `fold_model`)."""

    def conformal(self, Y: np.ndarray) -> Conformal:
        """Interval calibration from the deployed model's out-of-fold predictions, with the
        folds that measure the optimism of picking the best."""
        m = self.deployed
        return Conformal(
            np.asarray(Y).reshape(len(self.oof[m]), -1),
            self.oof[m],
            self.oof_runs.get(m),
            self.folds,
        )

    @property
    def deployed(self) -> str:
        """The model whose out-of-fold predictions describe what is deployed: the per-target
        choice ('auto') when there were candidates, else the one model."""
        return SELECTED if SELECTED in self.oof else next(iter(self.oof))

    def deploy(self, X: np.ndarray, Y: np.ndarray, transform: str = "auto", seed: int = 0) -> Any:
        """The chosen surrogates refitted on all runs, from the folds' templates (a GP's
        kernels learned on all runs are conditioned on, not learned again)."""
        best = self.best()
        targets = list(dict.fromkeys(self.table["target"].to_list()))
        return AutoSurrogate(
            candidates=[m for m in self.oof if m != SELECTED],
            weight_transform=transform,
            choice=[best[t] for t in targets],
            templates=self.templates,
            random_state=seed,
        ).fit(X, Y)

    def best(self) -> dict[str, str]:
        """target -> model with the highest mean Spearman (lower RMSE breaks ties)."""
        ranked = self.table.filter(pl.col("model") != SELECTED).sort(
            ["target", "spearman", "rmse"], descending=[False, True, False]
        )
        return dict(
            ranked.group_by("target", maintain_order=True)
            .first()
            .select("target", "model")
            .iter_rows()
        )


def _select_out_of_fold(
    preds: Mapping[str, np.ndarray], Y: np.ndarray, fold: np.ndarray
) -> np.ndarray:
    """The per-target choice's own out-of-fold predictions: each fold's targets are predicted
    by the model that scored best on the other folds' out-of-fold predictions, so the choice
    never sees the residuals it is judged on."""
    names = list(preds)
    out = np.empty_like(Y)
    for k in np.unique(fold):
        rest, test = fold != k, fold == k
        for j in range(Y.shape[1]):
            scores = [_spearman(preds[m][rest, j], Y[rest, j]) for m in names]
            out[test, j] = preds[names[int(np.argmax(scores))]][test, j]
    return out


def _rows(target: str, model: str, per_repeat: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    rho = [_spearman(p, y) for p in per_repeat]
    err = per_repeat - y[None, :]
    return {
        "target": target,
        "model": model,
        "spearman": float(np.mean(rho)),
        "spearman_sd": float(np.std(rho)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
    }


def fold_template(model: Any, X: np.ndarray, Y: np.ndarray) -> Any:
    """What the deployed refit on all runs starts from: the model itself, or for a model with
    a `fold_template` method (the GP) the model with hyperparameters learned once on all runs
    (`CVResult.deploy` then conditions on them without learning again)."""
    if hasattr(model, "fold_template"):
        return model.fold_template(X, Y if Y.shape[1] > 1 else Y[:, 0])
    return model


def fold_model(model: Any, template: Any) -> Any:
    """What cross-validation refits on each fold: the model as configured, whose folds learn
    their own hyperparameters from its own starting point, never from ones learned on all runs
    (the held-out runs would have chosen them). A GP set not to learn (`learn=False`) is
    conditioned on the kernels learned on all runs: faster, and optimistic by design."""
    if getattr(model, "learn", True) is False:
        return template
    return model


def fit_folds(
    model: Any, X: np.ndarray, y: np.ndarray, trains: Sequence[np.ndarray], name: str = ""
) -> Iterator[Any]:
    """`model` fitted on every training subset, one at a time: by the model's own
    `fit_folds` where it has one (the GP learns all folds at once), else a clone per subset."""
    if hasattr(model, "fit_folds"):
        yield from model.fit_folds(X, y, trains)
        return
    for i, t in enumerate(trains):
        yield clone(model).fit(X[t], y[t])
        progress.report(name or type(model).__name__, i + 1, len(trains))


def cross_validate(
    X: np.ndarray,
    Y: np.ndarray,
    models: Mapping[str, Any],
    targets: Sequence[str] | None = None,
    *,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> CVResult:
    """Repeated grouped K-fold out-of-fold evaluation of each model on every target.

    Runs of one mixture (`groups`; by default identical weight rows) always fall in the same
    fold. With several models, the per-target choice among them is scored too (model 'auto'),
    on its own out-of-fold predictions (`_select_out_of_fold`)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    names = list(targets) if targets is not None else [f"y{j}" for j in range(Y.shape[1])]
    groups = mixture_groups(X) if groups is None else np.asarray(groups)
    fold_ids = [grouped_folds(groups, folds, seed + r) for r in range(repeats)]
    stacks: dict[str, np.ndarray] = {}
    templates: dict[str, Any] = {}
    trains = [np.flatnonzero(fold != k) for fold in fold_ids for k in range(folds)]
    for model_name, model in models.items():
        template = templates[model_name] = fold_template(model, X, Y)
        per_fold = fold_model(model, template)
        fitted = iter(fit_folds(per_fold, X, Y if Y.shape[1] > 1 else Y[:, 0], trains, model_name))
        per_repeat = []
        for fold in fold_ids:
            P = np.empty_like(Y)
            for k in range(folds):
                test = np.flatnonzero(fold == k)
                P[test] = np.asarray(next(fitted).predict(X[test])).reshape(len(test), -1)
            per_repeat.append(P)
        stacks[model_name] = np.stack(per_repeat)
    if len(models) > 1:
        stacks[SELECTED] = np.stack(
            [
                _select_out_of_fold({m: st[r] for m, st in stacks.items()}, Y, fold_ids[r])
                for r in range(repeats)
            ]
        )
    rows = [
        _rows(target, model_name, stack[:, :, j], Y[:, j])
        for model_name, stack in stacks.items()
        for j, target in enumerate(names)
    ]
    return CVResult(
        pl.DataFrame(rows),
        {m: st.mean(axis=0) for m, st in stacks.items()},
        oof_runs=stacks,
        folds=np.stack(fold_ids),
        templates=templates,
    )


class AutoSurrogate(RegressorMixin, BaseEstimator):
    """Chooses, per target, the candidate with the best cross-validated Spearman, then refits it
    on all runs. `predict(..., return_std=True)` reports each chosen model's latent sd (the
    GP's posterior, ridge's analytic one); with `uncertainty=True` a chosen model without one
    gets a bootstrap ensemble beside it whose spread stands in (the mean always comes from the
    model fitted on all runs)."""

    def __init__(
        self,
        candidates: Sequence[str] = ("linear", "gp"),
        folds: int = 5,
        repeats: int = 3,
        uncertainty: bool = True,
        weight_transform: str = "auto",
        choice: Sequence[str] | None = None,
        random_state: int = 0,
        templates: Mapping[str, Any] | None = None,
    ) -> None:
        self.candidates = candidates
        self.choice = choice
        self.templates = templates
        """model -> its cross-validation template (`CVResult.templates`), with `choice`."""
        self.weight_transform = weight_transform
        self.folds = folds
        self.repeats = repeats
        self.uncertainty = uncertainty
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> AutoSurrogate:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        Y = np.asarray(y).reshape(len(X), -1)
        self.single_target_ = np.asarray(y).ndim == 1
        if self.choice is not None:  # chosen before (e.g. by `automixer fit`): no CV again
            if len(self.choice) != Y.shape[1]:
                raise ValueError(f"choice names {len(self.choice)} models for {Y.shape[1]} targets")
            self.cv_: CVResult | None = None
            self.choice_ = list(self.choice)
        else:
            models = {c: make_surrogate(c, self.weight_transform) for c in self.candidates}
            folds = min(self.folds, len(np.unique(mixture_groups(X))))
            self.cv_ = cross_validate(
                X, Y, models, folds=folds, repeats=self.repeats, seed=self.random_state
            )
            self.choice_ = [self.cv_.best()[f"y{j}"] for j in range(Y.shape[1])]
        self.models_ = []
        templates = self.cv_.templates if self.cv_ is not None else dict(self.templates or {})
        for name in dict.fromkeys(self.choice_):
            cols = [j for j, c in enumerate(self.choice_) if c == name]
            template: Any = templates.get(name)
            if template is not None and hasattr(template, "frozen"):
                point = template.frozen(cols)
            else:
                point = make_surrogate(name, self.weight_transform)
                if "per_target" in point.get_params():  # the sharing CV scored, on all targets
                    point.set_params(per_target=per_target_kernels(len(X), Y.shape[1]))
            point.fit(X, Y[:, cols])
            spread = None
            if self.uncertainty and not getattr(point, "latent_std", False):
                # enough members to span every direction of the weights
                spread = BootstrapEnsemble(
                    make_surrogate(name, self.weight_transform),
                    n_estimators=max(10, X.shape[1] + 1),
                    random_state=self.random_state,
                )
                spread.fit(X, Y[:, cols])
            self.models_.append((cols, point, spread))
        self.n_targets_ = Y.shape[1]
        return self

    def predict(self, X: Any, return_std: bool = False) -> Any:
        check_is_fitted(self, "models_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        mean = np.empty((len(X), self.n_targets_))
        std = np.empty_like(mean)
        for cols, point, spread in self.models_:
            if return_std and spread is None:
                m, sd = point.predict(X, return_std=True)
            else:
                m = point.predict(X)
                sd = spread.predict(X, return_std=True)[1] if spread is not None else None
            mean[:, cols] = np.asarray(m).reshape(len(X), -1)
            if return_std:
                std[:, cols] = np.asarray(sd).reshape(len(X), -1)
        if self.single_target_:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
