"""Typed configuration for every stage of automixer.

One YAML file describes a whole experiment. `load_config` reads it with safe YAML loading,
validates it against the pydantic models below and reports the first problem as one line that
names the file, the YAML line and the field. `dump_config` writes the resolved config back as
YAML; `config_hash` is the provenance key that every run directory and result row carries.

Relative paths in a config are taken relative to the working directory the command runs in.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import math
import re
import types
import typing
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from automixer.errors import ConfigError
from automixer.mixture import WeightIssue, check_weights
from automixer.registry import (
    ABILITIES,
    EXECUTORS,
    EXPORT_FORMATS,
    SOLVERS,
    SURROGATES,
    unknown,
)


class FieldIssue(ValueError):
    """A cross-field problem, with the path (below the validating model) of the field at fault."""

    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.path = path


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)


DomainName = Annotated[
    str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*(\.[A-Za-z][A-Za-z0-9_\-]*)?$", max_length=64)
]
"""A domain's name; a quality tier of a source is `source.tier` (e.g. `web.high`)."""
TierName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$", max_length=32)]


class RunSection(_Section):
    name: str = "automixer"
    """Name of the experiment; it prefixes the run directory's name."""
    out_dir: Path = Path("runs")
    """Folder that holds run directories (one per config hash)."""
    cache_dir: Path = Path(".cache/automixer")
    """Folder for cached documents, tokenizers and token shards, shared by all runs."""
    seed: int = 0
    """Master seed: splits, designs, training and cross-validation derive their seeds from it."""


class HFSource(_Section):
    path: str
    """Dataset name on the Hugging Face Hub (e.g. 'HuggingFaceFW/fineweb-edu') or a local folder
    written by `datasets.save_to_disk`."""
    name: str | None = None
    """Dataset configuration name (the second argument of `datasets.load_dataset`)."""
    data_files: list[str] | None = None
    """Local data files for a packaged builder (`path: json`, `parquet`, `text`, `csv`)."""
    split: str = "train"
    """Split to read."""
    revision: str | None = None
    """Git revision of the dataset repository; pin it for reproducible sweeps."""
    streaming: bool = False
    """Stream the dataset instead of downloading it whole (for large corpora)."""


class TierSpec(_Section):
    """How a source splits into quality tiers, each a domain of its own (`web.high`, ...)."""

    field: str | None = None
    """A numeric field the data carries (a JSON key, a parquet or dataset column), e.g.
    FineWeb-Edu's `score`: higher is better."""
    scorer: Literal["reference"] | None = None
    """A built-in scorer, needing no download: `reference` is a classifier (hashed word 1-2
    gram features, logistic regression) of the `reference` corpus against this source; a
    document's score is its probability of being reference-like, cross-fitted (a document is
    never scored by a model that trained on it)."""
    reference: str = "wiki"
    """The reference corpus of the `reference` scorer (a built-in corpus name)."""
    names: list[TierName] = Field(default_factory=lambda: ["high", "medium", "low"])
    """The tiers from the highest scores down."""
    quantiles: list[float] | None = None
    """Cuts at quantiles of the source's own scores, descending, one fewer than `names`
    (default: equal shares, e.g. [0.667, 0.333] for three tiers)."""
    thresholds: list[float] | None = None
    """Cuts at given scores instead, descending: tier k holds the documents scoring at least
    cut k and below cut k - 1; the last tier holds the rest."""

    @model_validator(mode="after")
    def _one_score(self) -> TierSpec:
        if (self.field is None) == (self.scorer is None):
            raise ValueError("give exactly one of 'field' (a numeric data field) and 'scorer'")
        if len(set(self.names)) != len(self.names) or len(self.names) < 2:
            raise FieldIssue("needs two or more distinct tier names", ("names",))
        if self.quantiles is not None and self.thresholds is not None:
            raise ValueError("give 'quantiles' or 'thresholds', not both")
        for key in ("quantiles", "thresholds"):
            cuts = getattr(self, key)
            if cuts is None:
                continue
            if len(cuts) != len(self.names) - 1:
                raise FieldIssue(
                    f"needs {len(self.names) - 1} cuts for {len(self.names)} tiers, got "
                    f"{len(cuts)}",
                    (key,),
                )
            if any(not math.isfinite(c) for c in cuts) or any(
                a <= b for a, b in itertools.pairwise(cuts)
            ):
                raise FieldIssue(f"cuts must be finite and strictly descending, got {cuts}", (key,))
            if key == "quantiles" and not all(0.0 < c < 1.0 for c in cuts):
                raise FieldIssue(f"quantiles must lie in (0, 1), got {cuts}", (key,))
        return self

    def cuts(self) -> tuple[str, list[float]]:
        """('quantiles' or 'thresholds', the descending cuts)."""
        if self.thresholds is not None:
            return "thresholds", list(self.thresholds)
        if self.quantiles is not None:
            return "quantiles", list(self.quantiles)
        n = len(self.names)
        return "quantiles", [round(1 - k / n, 6) for k in range(1, n)]


class TierOf(_Section):
    """Set on the domains a tiered source expands into (written into the resolved config)."""

    source: DomainName
    """The source's name (the domain as the user wrote it)."""
    name: TierName
    """This tier's name."""
    rank: int = Field(ge=0)
    """0 for the highest tier."""
    index: int = Field(ge=0)
    """The source's position in the config's `domains` list (for error messages)."""


class TokenFiles(_Section):
    """A domain held as the full run's own token files (no re-tokenisation): Megatron-LM's
    indexed datasets or OLMo-core's numpy token files, made with `tokenizer.path`."""

    format: Literal["megatron", "numpy"]
    """`megatron`: `.bin` + `.idx` pairs (read with megatron-core's `IndexedDataset`);
    `numpy`: flat token arrays, documents ended by `eos_token_id` (read with OLMo-core's
    document indexing over a numpy memmap)."""
    paths: list[str] = Field(min_length=1)
    """Glob patterns: of path prefixes or `.bin`/`.idx` files (megatron), or of `.npy` files."""
    dtype: Literal["uint8", "uint16", "uint32", "uint64"] | None = None
    """The token dtype: numpy token files carry no header, so it is required there; for
    Megatron files it is checked against the one the `.idx` header declares."""
    eos_token_id: int | None = Field(default=None, ge=0)
    """numpy: the token that ends each document (default: the tokenizer's end-of-text)."""

    @model_validator(mode="after")
    def _numpy_dtype(self) -> TokenFiles:
        if self.format == "numpy" and self.dtype is None:
            raise FieldIssue("numpy token files carry no header: give their dtype", ("dtype",))
        return self


class DomainSection(_Section):
    name: DomainName
    """Domain name: the weight column and metric suffix everywhere downstream."""
    builtin: str | None = None
    """Name of a built-in offline corpus (see `automixer.data.builtin.BUILTINS`)."""
    files: list[str] | None = None
    """Glob patterns of local jsonl / parquet / plain-text files."""
    hf: HFSource | None = None
    """A Hugging Face dataset."""
    tokens: TokenFiles | None = None
    """Token files of the full run (Megatron indexed datasets, OLMo-core numpy files); needs
    `tokenizer.path`, the tokenizer that made them."""
    format: Literal["auto", "jsonl", "parquet", "text"] = "auto"
    """File format for `files`; `auto` goes by the file extension."""
    text_field: str = "text"
    """Column or JSON key that holds the document text (jsonl, parquet and `hf`)."""
    max_documents: int | None = Field(default=None, gt=0)
    """Read at most this many documents (after filtering) from the source."""
    max_bytes: int | None = Field(default=None, gt=0)
    """Read at most this many UTF-8 bytes of text from the source."""
    licence: str | None = None
    """Licence of the text, recorded in the manifest (built-in corpora know their own)."""
    synthetic: bool = False
    """Synthetic text (generated by a model): `solve.groups` can bound all such domains."""
    tiers: TierSpec | None = None
    """Split the source into quality tiers; each becomes a domain `name.tier` everywhere
    downstream (design, sweep, surrogates, solver, recipes)."""
    tier: TierOf | None = None
    """Filled in by automixer on the domains a tiered source expands into; not written by hand."""
    available_tokens: float | None = Field(default=None, gt=0)
    """Tokens the whole source holds in the full run's tokenizer, when it is too large to count
    here (a streamed Hub dataset read only up to its limits). The repetition caps use it; a
    local source is counted whole even when `max_bytes` limits what the proxies read."""

    @model_validator(mode="after")
    def _one_source(self) -> DomainSection:
        given = [k for k in ("builtin", "files", "hf", "tokens") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one source among 'builtin', 'files', 'hf' and 'tokens'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.files is not None and not self.files:
            raise FieldIssue("needs at least one glob pattern", ("files",))
        if self.tokens is not None and self.tiers is not None:
            raise FieldIssue("token files carry no text to score: tier a text source", ("tiers",))
        return self


class DataSection(_Section):
    val_fraction: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Share of each domain's documents held out for validation bits-per-byte."""
    min_chars: int = Field(default=64, ge=1)
    """Documents shorter than this many characters are dropped."""
    dedup: bool | Literal["exact", "near"] = True
    """Remove exact duplicate documents within and across domains and splits (true or
    `exact`); `near` also removes near-duplicates (MinHash LSH, word 5-gram shingles, Jaccard
    at least `near_threshold`; `automixer audit` shows what it would remove)."""
    near_scope: Literal["global", "domain"] = "global"
    """`dedup: near` across all domains (the first of each cluster, in the config's domain
    order, is kept) or within each domain only."""
    near_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    """Jaccard similarity of word 5-gram shingle sets at which two documents are
    near-duplicates."""
    contamination_ngram: int = Field(default=13, ge=4, le=50)
    """Word n-gram length of the contamination check against evaluation items."""
    decontaminate: bool = True
    """Drop training documents that share an n-gram with an evaluation item."""
    max_epochs: float = Field(default=4.0, gt=0.0)
    """How many times a proxy may see a domain's training tokens; the loader refuses more."""


class TokenizerSection(_Section):
    path: Path | None = None
    """Use this `tokenizer.json` instead of training one."""
    vocab_size: int = 4096
    """Vocabulary size of the trained byte-level BPE (small by default for proxies)."""
    sample_bytes_per_domain: int = Field(default=2_000_000, gt=0)
    """Bytes of training text drawn from each domain to train the tokenizer (domain-balanced)."""
    min_frequency: int = Field(default=2, ge=1)
    """Minimum pair frequency for a BPE merge."""
    target: str | None = None
    """The full run's tokenizer (a tokenizer.json, a folder holding one, or a Hugging Face
    tokenizer name already in the local cache): the recipe's token counts and the repetition
    caps are then in its tokens, measured on each domain's text. Without it they are in the
    proxy tokenizer's tokens, and each domain's bytes per token is stated beside them."""

    @field_validator("vocab_size")
    @classmethod
    def _vocab_big_enough(cls, v: int) -> int:
        # 256 byte symbols, the end-of-text token, and at least one merge.
        if v < 258:
            raise ValueError(
                f"vocabulary of {v} is too small: a byte-level BPE needs at least 258 "
                "(256 byte symbols, 1 special token, 1 merge)"
            )
        if v > 2**31 - 1:
            raise ValueError(f"vocabulary of {v} is too large")
        return v


class ProxySection(_Section):
    preset: str = "quickstart"
    """Proxy model preset (see `proxies.presets`)."""
    tokens: int = Field(default=2_000_000, gt=0)
    """Training tokens per proxy."""
    seq_len: int = Field(default=256, ge=8)
    """Sequence length of training windows."""
    batch_size: int = Field(default=16, ge=1)
    """Sequences per optimizer step, per proxy."""
    lr: float = Field(default=0.02, gt=0.0)
    """Peak learning rate of Muon (hidden matrices)."""
    adam_lr: float = Field(default=3e-3, gt=0.0)
    """Peak learning rate of AdamW (embeddings, norms, router, head)."""
    warmup_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Share of the training tokens over which the learning rate warms up linearly (not rounded
    to whole steps, so proxies and `validate`'s longer models follow the same curve)."""
    schedule: Literal["cosine", "wsd"] = "wsd"
    """Learning-rate decay after warmup: cosine, or warmup-stable-decay (linear to a tenth of
    the peak over the last fifth of the steps; with phases, over the last phase). Both end at
    exactly a tenth of the peak on the last step. Phases need wsd."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    """'auto' (CUDA when present, else CPU), 'cpu', 'mps', or 'cuda[:N]'."""
    pack_size: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Proxies trained together in one packed model. 'auto': 1 on a CPU (packs measured
    slower there than one proxy after another); on a GPU the pack and micro-batch that train
    the most tokens per second within the device's memory, measured once per device and
    proxy shape (cached in run.cache_dir; `automixer.sweep.devices`)."""
    micro_batch: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Sequences per proxy in one forward and backward pass; gradients of batch_size /
    micro_batch passes are accumulated (where memory binds). 'auto': the whole batch on a
    CPU, measured with the pack size on a GPU. A number must divide batch_size."""
    compile: bool | None = None
    """Compile the training step (`torch.compile`, fullgraph). None: on a GPU, not on a CPU
    (where the eager step measured faster)."""
    eval_tokens: int = Field(default=16384, ge=1)
    """Held-out tokens per domain behind each proxy's bits per byte."""

    @model_validator(mode="after")
    def _micro_divides(self) -> ProxySection:
        if self.micro_batch != "auto" and self.batch_size % self.micro_batch:
            raise FieldIssue(
                f"micro_batch {self.micro_batch} must divide batch_size {self.batch_size}",
                ("micro_batch",),
            )
        return self


Weights = dict[str, float]


class SweepSection(_Section):
    n_runs: int = Field(default=60, ge=2)
    """Number of distinct mixtures to train (anchors included)."""
    replicates: int = Field(default=3, ge=0)
    """Extra seeds of one mixture, to measure seed noise against the spread between mixtures."""
    design: Literal["dirichlet", "sobol", "branched"] = "dirichlet"
    """Dirichlet sampling around the natural prior (RegMix), Sobol points on the simplex, or
    (with phases) branched schedules: `mains` main-phase mixtures each trained once to the last
    phase's start and checkpointed in the run directory, then n_runs / mains anneal mixtures
    trained from each checkpoint (a shared set, plus the main's own mixture kept). Branches
    of one main share its training noise, so the anneal's effect is measured paired, and each
    costs only the anneal's tokens."""
    mains: int = Field(default=8, ge=2)
    """With design: branched, the main-phase mixtures (natural and uniform among them); n_runs
    must be a multiple of it."""
    concentration: tuple[float, float] = (0.1, 5.0)
    """Range of Dirichlet concentration multipliers, spread log-uniformly."""
    min_distance: float = Field(default=0.02, ge=0.0)
    """Smallest L1 distance between two planned mixtures."""
    anchors: dict[str, Weights] = Field(default_factory=dict)
    """Extra mixtures always trained, by name (natural and uniform are always included)."""
    rounds: int = Field(default=1, ge=1)
    """1: all mixtures planned up front. More: an adaptive sweep: the design's first
    n_runs - (rounds - 1) * batch mixtures, then rounds - 1 batches chosen by Thompson sampling
    from a GP fitted to the objective of the runs so far (`automixer.adaptive`). The total is
    n_runs either way."""
    batch: int = Field(default=8, ge=1)
    """Mixtures chosen per adaptive round (with rounds > 1)."""
    stop_width: float | None = Field(default=None, gt=0.0)
    """Stop an adaptive sweep before n_runs once the optimum is pinned down: when the 95%
    interval of the best objective among the candidates (from the best lower to the best upper
    confidence bound) is narrower than this many standard deviations of the objective over the
    finished runs, i.e. no candidate can still beat the pick by more (e.g. 0.5), and the sweep
    has at least 4 runs per domain (fewer do not make the intervals trustworthy). None: the
    rounds always run to n_runs."""
    storage: str | None = None
    """Ledger URL (SQLite file in the run directory by default; postgresql://... for many
    machines). Credentials may come from the environment instead."""
    executor: str = "local"
    """Where proxies run: worker processes on this machine, or Ray tasks on a Ray cluster."""
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Worker processes (local) or Ray tasks running at once. 'auto': on a CPU, one
    single-threaded process per core if that measured faster for this proxy than one process
    with every core (measured once per machine and proxy shape, cached in run.cache_dir), else
    one; on a GPU, one; with Ray, one task per CPU (or GPU) of the cluster. A number N splits
    the cores between N local processes."""
    ray_address: str | None = None
    """Ray cluster to join ('auto', or 'ray://host:10001'); by default a local Ray instance is
    started, bound to 127.0.0.1 only. Workers must reach the ledger: on a cluster, use a
    PostgreSQL `storage`."""
    heartbeat_s: float = Field(default=30.0, gt=0.0)
    """A run whose worker has not reported for 4x this long is queued again."""
    save_weights: bool = True
    """Keep each finished proxy's weights as `<run dir>/proxies/<run_id>.pt` (for `automixer
    eval`); about 4 bytes per parameter each."""

    @field_validator("concentration")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1]):
            raise ValueError(f"needs 0 < low <= high, got {list(v)}")
        return v


class EvalsSection(_Section):
    suites: list[str] | None = None
    """Built-in suites to score (all by default)."""
    files: list[str] = Field(default_factory=list)
    """Extra task files (JSONL in automixer's task format)."""
    n_per_suite: int = Field(default=200, ge=1)
    """Seeded subsample of items per suite."""
    abilities: dict[str, dict[str, float]] | None = None
    """Per ability, weights over its suites (equal weights by default)."""


class SurrogateSection(_Section):
    model: str = "auto"
    """Surrogate by name ('linear', 'lightgbm', 'loglinear', 'gp', 'ensemble'), or 'auto' to pick
    per target by cross-validation."""
    candidates: list[str] = Field(default_factory=lambda: ["linear", "gp"])
    """Surrogates that 'auto' chooses among ('loglinear' and 'lightgbm' are the Olmix and RegMix
    baselines; add them to let the cross-validation weigh them too)."""
    transform: Literal["auto", "none", "sqrt", "log"] = "auto"
    """Transform of the weights before fitting; 'auto' keeps each surrogate's own default
    (square root for linear and gp, none for the lightgbm and loglinear baselines)."""
    cv_folds: int = Field(default=5, ge=2)
    """Folds of the repeated K-fold cross-validation."""
    cv_repeats: int = Field(default=3, ge=1)
    """Repeats of the K-fold cross-validation."""


class GroupBound(_Section):
    """A bound on the total weight of a set of domains (the design and the solver keep it)."""

    name: str = Field(min_length=1, max_length=64)
    """What the report calls the group."""
    domains: list[str] = Field(default_factory=list)
    """Members: domain names, a tiered source's name (all its tiers) or shell patterns
    (`web.*`)."""
    synthetic: bool = False
    """Also every domain marked `synthetic: true`."""
    min: float = Field(default=0.0, ge=0.0, le=1.0)
    """Lowest total weight of the members."""
    max: float = Field(default=1.0, ge=0.0, le=1.0)
    """Highest total weight of the members."""

    @model_validator(mode="after")
    def _ordered(self) -> GroupBound:
        if self.min > self.max:
            raise FieldIssue(f"min {self.min} exceeds max {self.max}", ("min",))
        if not self.domains and not self.synthetic:
            raise ValueError("name its members: 'domains' or 'synthetic: true'")
        return self


class SolveSection(_Section):
    objective: dict[str, float] = Field(default_factory=lambda: {a: 0.25 for a in ABILITIES})
    """Weights over abilities (or any metric names) of the objective to maximise."""
    method: str = "exact"
    """Solver: gradient-based on the surrogate, RegMix's simulate-and-average-top-k, or Optuna."""
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Per-domain [low, high] bounds on the weight. With `phases`, `domain` bounds the domain's
    weight within every phase's own mixture and `domain@phase` within that phase's."""
    groups: list[GroupBound] = Field(default_factory=list)
    """Bounds on the total weight of sets of domains (every tier of a source, every synthetic
    domain, ...); the sweep's design keeps them too."""
    max_epochs: float = Field(default=4.0, gt=0.0)
    """Repetition cap of the full run: w_d <= max_epochs * available_d / target_tokens, with
    available_d the domain's whole source (see `automixer.budget`)."""
    target_tokens: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    """Token budget of the full run: the solver enforces the repetition caps at it and the
    recipe is written for it (tokens and epochs per domain). Without it the recipe holds
    weights only."""
    prior_penalty: float = Field(default=0.0, ge=0.0)
    """Strength of the penalty toward the natural mixture (off by default: the floors, the
    lower confidence bound and the trust region below keep the optimum where the sweep can
    vouch for it without a hand-set strength)."""
    penalty: Literal["reverse_kl", "kl", "l1"] = "reverse_kl"
    """Kind of penalty toward the natural mixture: KL(natural || w), which grows without bound
    as a natural domain is dropped; KL(w || natural), which does not see a dropped domain; or
    the total-variation distance."""
    natural_floor: float = Field(default=0.25, ge=0.0, le=1.0)
    """Every domain without its own bounds keeps at least this fraction of its natural share
    (below its repetition cap). 0 lets the solver drop domains."""
    lcb_k: float | None = Field(default=None, ge=0.0)
    """The solver maximises the objective's lower confidence bound, mean - lcb_k * sd (sd: the
    surrogates' latent uncertainty at the mixture, the GP's posterior without its noise term
    or ridge's analytic posterior, the targets' variances added). Default: the one-sided
    normal quantile of `interval_level` (1.645 at 0.95); 0 maximises the mean."""
    trust_region: float | Literal["auto"] | None = "auto"
    """The farthest (total variation) the optimum may lie from its nearest trained run. "auto":
    the largest distance from a trained run to its nearest neighbour, i.e. no farther than the
    sweep itself is spread; null: no limit."""
    interval_level: float = Field(default=0.95, gt=0.0, lt=1.0)
    """Nominal coverage of the prediction intervals (conformal, from out-of-fold residuals:
    they cover what a new proxy run would measure, seed noise included)."""

    @field_validator("trust_region")
    @classmethod
    def _positive_radius(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float) and not (0.0 < v <= 1.0):
            raise FieldIssue(f"needs a total-variation distance in (0, 1], got {v}", ())
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds_ordered(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (lo, hi) in v.items():
            if not (0.0 <= lo <= hi <= 1.0):
                raise FieldIssue(f"needs 0 <= low <= high <= 1, got [{lo}, {hi}]", (name,))
        return v


def data_path_problem(value: str) -> str | None:
    """What is wrong with a data path for the framework recipes, or None: Megatron's blend file
    separates its entries by whitespace (a space or a newline in a path would add entries and
    shift the weights), and no format takes control characters or an empty path."""
    if not value or any(c.isspace() or ord(c) < 32 for c in value):
        return (
            f"path {value!r} is empty or holds whitespace or a control character, which "
            "Megatron's blend file cannot carry (rename the folder or link it)"
        )
    return None


class ExportSection(_Section):
    formats: list[str] = Field(default_factory=lambda: list(EXPORT_FORMATS))
    """Recipe formats written by `automixer export` (see `automixer.registry.EXPORT_FORMATS`)."""
    paths: dict[str, str] = Field(default_factory=dict)
    """Per domain, where the full run's tokenized data lives: Megatron's preprocessing output
    prefix (the blend names `<path>_<json_key>_document`) and OLMo-core's folder of token files
    (`<path>/*.npy`). Domains left out get their name, relative to where the trainer runs."""
    megatron_json_key: str = "text"
    """The `--json-keys` of Megatron's preprocessing: part of its output file names."""
    global_batch_size: int = Field(default=4 * 1024 * 1024, gt=0)
    """Global batch size in tokens, for OLMo-core's `SourceMixtureDatasetConfig`."""
    seed: int = 0
    """Sampling seed written into the framework configs."""

    @field_validator("paths")
    @classmethod
    def _paths_fit_every_format(cls, v: dict[str, str]) -> dict[str, str]:
        for domain, path in v.items():
            problem = data_path_problem(path)
            if problem:
                raise FieldIssue(problem, (domain,))
        return v

    @model_validator(mode="before")
    @classmethod
    def _moved_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and "target_tokens" in data:
            raise FieldIssue(
                "moved: the full run's budget is solve.target_tokens (one budget for the "
                "solver's repetition caps and the recipe)",
                ("target_tokens",),
            )
        return data


class TrackingSection(_Section):
    backends: list[Literal["mlflow", "tensorboard"]] = Field(default_factory=list)
    """Where each proxy's loss curve, scores and mixture, and the sweep's fit and solve
    summary, are logged as the sweep goes (none by default; nothing is imported then)."""
    mlflow_uri: str | None = None
    """MLflow tracking URI; default: a SQLite store in the run directory (mlflow.db)."""
    tensorboard_dir: Path | None = None
    """TensorBoard log folder; default: tensorboard/ in the run directory."""


class PhaseSpec(_Section):
    """A training phase of the full run: its name and its share of the run's tokens."""

    name: TierName
    share: float = Field(gt=0.0, le=1.0)
    """Share of the run's tokens (the phases' shares sum to 1)."""


class Config(_Section):
    """A whole automixer experiment."""

    run: RunSection = Field(default_factory=RunSection)
    """Names, folders and the master seed."""
    domains: list[DomainSection]
    """The data domains to mix."""
    data: DataSection = Field(default_factory=DataSection)
    """Splitting, deduplication, decontamination and repetition limits."""
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    """The tokenizer shared by all proxies."""
    proxy: ProxySection = Field(default_factory=ProxySection)
    """The proxy models and their training budget."""
    sweep: SweepSection = Field(default_factory=SweepSection)
    """The mixtures to train and where they run."""
    evals: EvalsSection = Field(default_factory=EvalsSection)
    """The evaluation suites."""
    surrogate: SurrogateSection = Field(default_factory=SurrogateSection)
    """The surrogate regressions."""
    solve: SolveSection = Field(default_factory=SolveSection)
    """The objective, the constraints and the solver."""
    export: ExportSection = Field(default_factory=ExportSection)
    """The exported recipes."""
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    """Experiment tracking (MLflow, TensorBoard): off by default."""
    phases: list[PhaseSpec] = Field(default_factory=list)
    """Training phases of the full run, in order (e.g. main 0.8, anneal 0.2): the sweep, the
    surrogates and the solver then work on one mixture per phase, and the recipes hold one per
    phase. With `proxy.schedule: wsd` the learning rate decays over the last phase. Empty (the
    default): one mixture for the whole run."""

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    @property
    def weight_names(self) -> list[str]:
        """The names of a mixture's weights: the domains, or with phases `domain@phase` for
        each phase and domain (phase by phase), each weight a share of the whole run."""
        if not self.phases:
            return self.domain_names
        return [f"{d}@{p.name}" for p in self.phases for d in self.domain_names]

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if any(d.tiers is not None and d.tier is None for d in self.domains):
            object.__setattr__(self, "domains", _expand_tiers(self.domains))
        names = self.domain_names
        if not names:
            raise FieldIssue("needs at least one domain", ("domains",))
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise FieldIssue(f"domain '{n}' is defined twice", ("domains", i, "name"))
            seen.add(n)
        for anchor, weights in self.sweep.anchors.items():
            try:
                check_weights(weights, names)
            except WeightIssue as e:
                path: tuple[str | int, ...] = ("sweep", "anchors", anchor)
                raise FieldIssue(str(e), path + ((e.key,) if e.key else ())) from None
        phase_names = {p.name for p in self.phases}
        for name in self.solve.bounds:
            d, sep, p = name.partition("@")
            if d not in seen or (sep and p not in phase_names):
                raise FieldIssue(_unknown_domain(name, names), ("solve", "bounds", name))
        if self.solve.bounds and not self.phases:
            lo = sum(self.solve.bounds.get(n, (0.0, 1.0))[0] for n in names)
            hi = sum(self.solve.bounds.get(n, (0.0, 1.0))[1] for n in names)
            if lo > 1.0 + 1e-9 or hi < 1.0 - 1e-9:
                raise FieldIssue(
                    f"no mixture fits: lower bounds sum to {lo:.4g}, upper bounds to {hi:.4g}",
                    ("solve", "bounds"),
                )
        if self.phases:
            _check_phases(self)
        elif self.sweep.design == "branched":
            raise FieldIssue(
                "a branched sweep branches anneals from main-phase checkpoints: give phases",
                ("sweep", "design"),
            )
        token_domains = [i for i, d in enumerate(self.domains) if d.tokens is not None]
        if token_domains and self.tokenizer.path is None:
            raise FieldIssue(
                f"domain '{self.domains[token_domains[0]].name}' is token files: give the "
                "tokenizer that made them",
                ("tokenizer", "path"),
            )
        for i, group in enumerate(self.solve.groups):
            try:
                group_members(self, group)
            except ValueError as e:
                raise FieldIssue(str(e), ("solve", "groups", i, "domains")) from None
        for key, w in self.solve.objective.items():
            if not math.isfinite(w) or w < 0:
                raise FieldIssue(
                    f"objective weight must be finite and >= 0, got {w}",
                    ("solve", "objective", key),
                )
        if self.solve.objective and sum(self.solve.objective.values()) <= 0:
            raise FieldIssue("objective weights are all zero", ("solve", "objective"))
        _check_names(self)
        if self.sweep.n_runs < 2 + len(self.sweep.anchors):
            raise FieldIssue(
                f"n_runs={self.sweep.n_runs} leaves no room beside natural, uniform and "
                f"{len(self.sweep.anchors)} anchors",
                ("sweep", "n_runs"),
            )
        first = self.sweep.n_runs - (self.sweep.rounds - 1) * self.sweep.batch
        if self.sweep.rounds > 1 and first < max(2 + len(self.sweep.anchors), 4):
            raise FieldIssue(
                f"{self.sweep.rounds - 1} adaptive rounds of {self.sweep.batch} leave "
                f"{first} of n_runs={self.sweep.n_runs} for the first, space-filling batch "
                "(it needs at least 4 and the anchors)",
                ("sweep", "rounds"),
            )
        return self


def _check_names(config: Config) -> None:
    """Every name the config gives a registry is in it (see `automixer.registry`), and every
    name the whole loop will need later exists now: built-in corpora, the objective's
    metrics."""
    from automixer.data.builtin import BUILTINS
    from automixer.evals.suites import SUITES
    from proxies.presets import PRESETS

    if config.proxy.preset not in PRESETS:
        raise FieldIssue(unknown("preset", config.proxy.preset, list(PRESETS)), ("proxy", "preset"))
    for i, d in enumerate(config.domains):
        if d.builtin is not None and d.builtin not in BUILTINS:
            raise FieldIssue(
                unknown("built-in corpus", d.builtin, list(BUILTINS)), ("domains", i, "builtin")
            )
    surrogates = ["auto", *SURROGATES]
    s = config.surrogate
    if s.model not in surrogates:
        raise FieldIssue(unknown("surrogate", s.model, surrogates), ("surrogate", "model"))
    for i, c in enumerate(s.candidates):
        if c not in SURROGATES:
            raise FieldIssue(
                unknown("surrogate", c, list(SURROGATES)), ("surrogate", "candidates", i)
            )
    if config.solve.method not in SOLVERS:
        raise FieldIssue(unknown("solver", config.solve.method, list(SOLVERS)), ("solve", "method"))
    if config.sweep.executor not in EXECUTORS:
        raise FieldIssue(
            unknown("executor", config.sweep.executor, list(EXECUTORS)), ("sweep", "executor")
        )
    for i, f in enumerate(config.export.formats):
        if f not in EXPORT_FORMATS:
            raise FieldIssue(unknown("format", f, list(EXPORT_FORMATS)), ("export", "formats", i))
    for i, name in enumerate(config.evals.suites or []):
        if name not in SUITES:
            raise FieldIssue(unknown("suite", name, list(SUITES)), ("evals", "suites", i))
    scored = set(config.evals.suites if config.evals.suites is not None else SUITES)
    for ability, weights in (config.evals.abilities or {}).items():
        for name in weights:
            # Suites of task files are only known once the files are read.
            if name not in scored and not (config.evals.files and name not in SUITES):
                raise FieldIssue(
                    f"suite '{name}' is not scored; scored suites: {', '.join(sorted(scored))}",
                    ("evals", "abilities", ability, name),
                )
    names = _metric_names(config, {n: v.ability for n, v in SUITES.items()})
    for key in config.solve.objective:
        if key in names or f"ability:{key}:bpb" in names:
            continue
        if any(fnmatch.fnmatchcase(n, key) for n in names):
            continue
        if config.evals.files and key.startswith(("suite:", "ability:")):
            continue  # suites of task files are only known once the files are read
        if key in ABILITIES or key in (config.evals.abilities or {}):
            raise FieldIssue(
                f"no suite of ability '{key}' is scored (evals.abilities / evals.suites)",
                ("solve", "objective", key),
            )
        near = get_close_matches(key, [*ABILITIES, *names], n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise FieldIssue(
            f"'{key}' names no metric the sweep will measure{hint}; use an ability "
            f"({', '.join(sorted({*ABILITIES, *(config.evals.abilities or {})}))}) or a "
            "metric name such as domain:<d>:bpb",
            ("solve", "objective", key),
        )


def _metric_names(config: Config, builtin: dict[str, str]) -> list[str]:
    """Every metric the sweep will record for this config (task files' suites aside);
    `builtin` maps the built-in suites to their abilities."""
    suites = config.evals.suites if config.evals.suites is not None else list(builtin)
    abilities = set(config.evals.abilities or {builtin[s] for s in suites if s in builtin})
    return (
        [f"domain:{d}:bpb" for d in config.domain_names]
        + [f"suite:{s}:{m}" for s in suites for m in ("bpb", "acc", "acc_norm")]
        + [f"ability:{a}:{m}" for a in sorted(abilities) for m in ("bpb", "acc")]
    )


def _check_phases(config: Config) -> None:
    phases = config.phases
    if len(phases) < 2:
        raise FieldIssue("give two or more phases, or none (one mixture for the run)", ("phases",))
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise FieldIssue("phase names must be distinct", ("phases",))
    total = sum(p.share for p in phases)
    if abs(total - 1.0) > 1e-6:
        raise FieldIssue(f"phase shares sum to {total:.6g}, not 1", ("phases",))
    if config.sweep.design == "branched" and config.sweep.n_runs % config.sweep.mains:
        raise FieldIssue(
            f"a branched sweep trains n_runs / mains anneals from each main: n_runs "
            f"{config.sweep.n_runs} is not a multiple of mains {config.sweep.mains}",
            ("sweep", "n_runs"),
        )
    if config.sweep.design == "branched" and config.sweep.n_runs // config.sweep.mains < 3:
        raise FieldIssue(
            "a branched sweep needs at least 3 anneals per main (n_runs >= 3 x mains): the main's "
            "own mixture and two others",
            ("sweep", "n_runs"),
        )
    if config.proxy.schedule != "wsd":
        raise FieldIssue(
            f"'{config.proxy.schedule}' has no anneal to put the last phase in; with phases use "
            "wsd (the learning rate decays over the last phase)",
            ("proxy", "schedule"),
        )
    if config.sweep.rounds > 1:
        raise FieldIssue(
            "adaptive rounds do not plan schedules yet; use sweep.rounds: 1 with phases",
            ("sweep", "rounds"),
        )
    for p in phases:  # each phase's own mixture within its bounds (`d` or `d@phase`)
        lo = hi = 0.0
        for d in config.domain_names:
            b = config.solve.bounds.get(f"{d}@{p.name}", config.solve.bounds.get(d, (0.0, 1.0)))
            lo, hi = lo + b[0], hi + b[1]
        if lo > 1.0 + 1e-9 or hi < 1.0 - 1e-9:
            raise FieldIssue(
                f"no mixture of phase '{p.name}' fits: its lower bounds sum to {lo:.4g}, its "
                f"upper bounds to {hi:.4g}",
                ("solve", "bounds"),
            )
    batch = config.proxy.seq_len * config.proxy.batch_size
    steps = config.proxy.tokens // batch
    for i, p in enumerate(phases):
        if round(p.share * steps) < 1:
            raise FieldIssue(
                f"phase '{p.name}' gets no whole batch of the proxies' {steps} steps "
                f"(share {p.share:g}); raise its share or proxy.tokens",
                ("phases", i, "share"),
            )


def _expand_tiers(domains: list[DomainSection]) -> list[DomainSection]:
    """Each tiered source becomes one domain per tier, `source.tier`, in the source's place."""
    out: list[DomainSection] = []
    for i, d in enumerate(domains):
        if d.tiers is None or d.tier is not None:
            out.append(d)
            continue
        for rank, tier in enumerate(d.tiers.names):
            tier_of = TierOf(source=d.name, name=tier, rank=rank, index=i)
            out.append(d.model_copy(update={"name": f"{d.name}.{tier}", "tier": tier_of}))
    return out


def group_members(config: Config, group: GroupBound) -> list[str]:
    """The domains a group bounds, in the config's order; a pattern or name that matches no
    domain is a `ValueError`."""
    names = config.domain_names
    members: set[str] = set()
    for pattern in group.domains:
        found = [
            n
            for n in names
            if n == pattern
            or fnmatch.fnmatchcase(n, pattern)
            or n.startswith(f"{pattern}.")  # a tiered source names all its tiers
        ]
        if not found:
            raise ValueError(f"group '{group.name}': {_unknown_domain(pattern, names)}")
        members.update(found)
    if group.synthetic:
        marked = [d.name for d in config.domains if d.synthetic]
        if not marked and not group.domains:
            raise ValueError(f"group '{group.name}': no domain is marked 'synthetic: true'")
        members.update(marked)
    return [n for n in names if n in members]


def _unknown_domain(name: str, names: list[str]) -> str:
    near = get_close_matches(name, names, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return f"unknown domain '{name}'{hint}; known: {', '.join(names)}"


# --------------------------------------------------------------------------------------------
# Reading, writing and hashing


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; every problem is a `ConfigError` naming file and field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", file=p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config: {e}", file=p) from None
    return parse_config(text, source=str(p))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text as a `Config` (see `load_config`)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_size(node, source)
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError("malformed YAML: nested too deeply", file=source) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None and (mark is None or cmark.line != mark.line):
            problem += f" ({context} at line {cmark.line + 1})"
        raise ConfigError(f"malformed YAML: {problem}", file=source, line=line) from None
    if data is None:
        raise ConfigError("config is empty", file=source)
    if not isinstance(data, dict):
        raise ConfigError(
            "a config is a mapping of sections (run, domains, ...)", file=source, line=1
        )
    _check_duplicate_keys(node, source)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise _to_config_error(e, node, source) from None


MAX_NODES = 100_000
MAX_DEPTH = 64


def _check_size(node: yaml.Node | None, source: str) -> None:
    """Refuse a document whose aliases expand it beyond `MAX_NODES` nodes ("billion laughs")
    or whose nesting is deeper than `MAX_DEPTH`: sizes are counted once per shared node."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"malformed YAML: nested more than {MAX_DEPTH} levels deep",
                file=source,
                line=n.start_mark.line + 1,
            )
        if id(n) in sizes:
            return sizes[id(n)]
        total = 1
        if isinstance(n, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total += sum(size(v, depth + 1) for v in n.value)
        sizes[id(n)] = min(total, MAX_NODES + 1)
        return sizes[id(n)]

    if node is not None and size(node, 0) > MAX_NODES:
        raise ConfigError(
            f"the YAML expands to more than {MAX_NODES:,} nodes (aliases repeated?)", file=source
        )


def _check_duplicate_keys(node: yaml.Node | None, source: str, path: str = "") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = str(k.value)
            if key in seen:
                raise ConfigError(
                    f"key '{key}' appears twice",
                    file=source,
                    field=f"{path}.{key}".lstrip("."),
                    line=k.start_mark.line + 1,
                )
            seen.add(key)
            _check_duplicate_keys(v, source, f"{path}.{key}")
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_duplicate_keys(v, source, f"{path}[{i}]")


def _to_config_error(err: ValidationError, node: yaml.Node | None, source: str) -> ConfigError:
    first = err.errors(include_url=False)[0]
    loc: tuple[str | int, ...] = tuple(first["loc"])
    ctx = first.get("ctx") or {}
    cause = ctx.get("error")
    msg = first["msg"]
    if isinstance(cause, FieldIssue):
        loc = loc + cause.path
        msg = str(cause)
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    # Drop pydantic's union/tagged noise from the location (it is not a YAML key).
    loc = tuple(part for part in loc if not (isinstance(part, str) and "[" in part))
    if first["type"] == "extra_forbidden":
        key = str(loc[-1])
        valid = _field_names_at(loc[:-1])
        near = get_close_matches(key, valid, n=1, cutoff=0.5)
        msg = f"unknown key '{key}'" + (f" (did you mean '{near[0]}'?)" if near else "")
        if valid:
            msg += f"; valid keys: {', '.join(valid)}"
    elif first["type"] == "missing":
        msg = "required field is missing"
    line = _line_of(node, loc)
    return ConfigError(msg, file=source, field=_format_loc(loc) or None, line=line)


def field_line(path: str | Path, field: str) -> int | None:
    """The YAML line of a field ('domains[0].files') in a config file, when it can be found."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    loc: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return _line_of(node, tuple(loc))


def _format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(part):
                    child, line = v, k.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _field_names_at(loc: tuple[str | int, ...]) -> list[str]:
    """The valid keys of the model that `loc` points into (for 'did you mean')."""
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            info = tp.model_fields.get(part)
            if info is None:
                return []
            tp = info.annotation
        else:
            args = typing.get_args(_unwrap(tp))
            tp = args[-1] if args else None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    if origin is Annotated:
        return typing.get_args(tp)[0]
    return tp


def config_to_dict(config: Config) -> dict[str, Any]:
    """The resolved config (defaults filled in) as plain data; a ledger password is masked
    (it is never written: workers get the URL from --storage or the environment)."""
    data = config.model_dump(mode="json")
    if data["sweep"].get("storage"):
        from automixer.io import mask_url

        data["sweep"]["storage"] = mask_url(data["sweep"]["storage"])
    return data


def dump_config(config: Config) -> str:
    """The resolved config as YAML (what every run directory saves)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)


_NOT_HASHED = {
    ("run", "out_dir"),
    ("run", "cache_dir"),
    ("sweep", "storage"),
    ("sweep", "workers"),
    ("sweep", "executor"),
    ("sweep", "ray_address"),
    ("sweep", "save_weights"),
    ("proxy", "device"),
    ("proxy", "pack_size"),
    ("proxy", "micro_batch"),
    ("proxy", "compile"),
}


_LATER_KEYS: dict[str, dict[str, Any]] = {
    "domains": {"synthetic": False, "tiers": None, "tier": None, "tokens": None},
    "solve": {"groups": []},
    "data": {"near_scope": "global", "near_threshold": 0.8},
}


def config_hash(config: Config) -> str:
    """A short hash of everything in the config that can change a result.

    Where things are written and run (folders, ledger URL, executor, device) is left out, so a
    sweep resumed on another machine or folder keeps its identity.
    """
    data = config_to_dict(config)
    for section, key in _NOT_HASHED:
        data[section].pop(key, None)
    data.pop("tracking", None)  # where results are reported, not what they are
    # Keys added after sweeps were run are hashed only when set: a config that does not use
    # them keeps the hash (and the run directory) it had.
    for domain in data["domains"]:
        for key, unset in _LATER_KEYS["domains"].items():
            if domain.get(key, unset) == unset:
                domain.pop(key, None)
    for section in ("solve", "data"):
        for key, unset in _LATER_KEYS[section].items():
            if data[section].get(key, unset) == unset:
                data[section].pop(key, None)
    if not data.get("phases"):
        data.pop("phases", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def slug(text: str) -> str:
    """A file-name-safe form of a name."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-") or "run"
