"""The full run's token budget and what each domain can serve at it.

One budget, `solve.target_tokens`: the solver caps every domain at it and the recipe is written
for it. The cap is

    w_d <= max_epochs * available_d / target_tokens

with `available_d` the domain's whole source, not the proxies' sample: declared in the config
(`domains[i].available_tokens`), or its counted bytes divided by bytes per token. Token counts
are in the full run's tokenizer when the config names one (`tokenizer.target`), otherwise in
the proxy tokenizer's tokens, with each domain's bytes per token stated so that a team can
convert them to its own tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from automixer.config import Config
from automixer.errors import AutomixerError


@dataclass(frozen=True)
class DomainSupply:
    tokens: float
    """Tokens the whole source holds (in `Supply.tokenizer`'s tokens)."""
    bytes: float
    """UTF-8 bytes of the source behind `tokens` (0 when declared in tokens)."""
    bytes_per_token: float
    basis: str
    """'counted' (the whole source was read), 'sample' (reading stopped at a limit: only the
    part read is counted; declare `available_tokens` for the rest) or 'declared'."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "available_tokens": round(self.tokens),
            "source_bytes": round(self.bytes),
            "bytes_per_token": round(self.bytes_per_token, 4),
            "available_basis": self.basis,
        }


@dataclass(frozen=True)
class Supply:
    domains: dict[str, DomainSupply]
    tokenizer: str
    """Which tokenizer the counts are in: 'target: <spec>' or 'proxy: <hash>'."""

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], config: Config) -> Supply:
        target = config.tokenizer.target
        rows = manifest.get("domains", {})
        out: dict[str, DomainSupply] = {}
        for d in config.domains:
            row = rows.get(d.name)
            if row is None:
                raise AutomixerError(f"domain '{d.name}' is not in the manifest (rerun `data`)")
            bpt = float(
                (row.get("target_bytes_per_token") if target else None) or row["bytes_per_token"]
            )
            if d.available_tokens is not None:
                out[d.name] = DomainSupply(float(d.available_tokens), 0.0, bpt, "declared")
                continue
            size = float(row.get("source_bytes") or row["bytes_train"] + row["bytes_val"])
            basis = "counted" if row.get("source_complete", True) else "sample"
            out[d.name] = DomainSupply(size / bpt, size, bpt, basis)
        tok = manifest.get("tokenizer", {})
        label = f"target: {target}" if target else f"proxy: {tok.get('hash', 'unknown')}"
        return cls(out, label)

    def tokens(self) -> dict[str, float]:
        return {d: s.tokens for d, s in self.domains.items()}

    def sampled(self) -> list[str]:
        """Domains whose supply is only the part read (their caps are conservative)."""
        return [d for d, s in self.domains.items() if s.basis == "sample"]


def caps(supply: Mapping[str, float], max_epochs: float, target_tokens: float) -> dict[str, float]:
    """The largest weight of each domain at the budget."""
    return {d: max_epochs * t / target_tokens for d, t in supply.items()}


def largest_feasible_budget(
    supply: Mapping[str, float], max_epochs: float, upper: Mapping[str, float] | None = None
) -> float:
    """The largest budget T at which sum_d min(upper_d, max_epochs * supply_d / T) >= 1."""
    tokens = np.array(list(supply.values()), dtype=np.float64)
    ub = np.array([(upper or {}).get(d, 1.0) for d in supply], dtype=np.float64)
    if ub.sum() < 1 - 1e-12:
        return 0.0

    def room(T: float) -> float:
        return float(np.minimum(ub, max_epochs * tokens / T).sum())

    lo, hi = 1.0, max_epochs * float(tokens.sum())  # room(hi) <= 1 always
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if room(mid) >= 1 else (lo, mid)
    return lo


def check_budget(
    supply: Mapping[str, float],
    max_epochs: float,
    target_tokens: float,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    *,
    file: Any = None,
) -> None:
    """An infeasible budget is one line naming the binding domains and the largest budget the
    data can serve."""
    upper = {d: (bounds or {}).get(d, (0.0, 1.0))[1] for d in supply}
    lower = {d: (bounds or {}).get(d, (0.0, 1.0))[0] for d in supply}
    cap = caps(supply, max_epochs, target_tokens)
    room = sum(min(upper[d], cap[d]) for d in supply)
    under = [d for d in supply if lower[d] > cap[d] + 1e-12]
    if room >= 1 - 1e-9 and not under:
        return
    binding = under or sorted((d for d in supply if cap[d] < upper[d]), key=lambda d: cap[d])
    best = min(
        [largest_feasible_budget(supply, max_epochs, upper)]
        + [max_epochs * supply[d] / lower[d] for d in supply if lower[d] > 0]
    )
    raise AutomixerError(
        f"the data cannot serve {target_tokens:.4g} tokens at max_epochs={max_epochs:g}: "
        + ", ".join(f"{d} holds {supply[d]:.4g} (cap {cap[d]:.3g})" for d in binding[:6])
        + f"; the largest feasible budget is {best:.4g} tokens"
        + " (or raise max_epochs, or add data)",
        file=file,
        field="solve.target_tokens",
    )


def config_caps_supply(
    supply: Supply, config: Config, *, file: Any = None
) -> dict[str, float] | None:
    """The token supply the solver's caps use at the config's budget (None without a budget),
    checked first: an infeasible budget is the one-line error of `check_budget`."""
    s = config.solve
    if s.target_tokens is None:
        return None
    tokens = supply.tokens()
    check_budget(tokens, s.max_epochs, s.target_tokens, s.bounds, file=file)
    return tokens
