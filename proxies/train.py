"""Training proxies: one, or a pack of P trained together, for a token budget with a seed.

`train_pack` returns, per proxy, its final weights, loss curve, held-out bits per byte on every
domain and its status. A non-finite loss stops that proxy (its learning rate drops to 0 and it is
reported failed at that step) while the rest of the pack goes on. A checkpoint written every
`checkpoint_every` steps lets a killed run resume where it stopped with identical results.

With `sdc_every`, the pack is R replicas of one proxy in lockstep (same seed, same data): every
`sdc_every` steps each replica's weights are hashed and compared, and a mismatch (faulty
arithmetic that ECC missed) stops training with the step and tensor.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automixer.data.loader import MixtureLoader
from automixer.io import atomic_path
from proxies.model import PackedLM
from proxies.optim import BatchedAdamW, BatchedMuon, clip_per_proxy, lr_multiplier, split_params
from proxies.presets import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 0.02
    """Peak learning rate of Muon."""
    adam_lr: float = 3e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    schedule: str = "wsd"
    grad_clip: float = 1.0
    device: str = "auto"
    eval_tokens: int = 32_768
    """Held-out tokens per domain scored at the end (bits per byte)."""
    eval_batch: int = 16
    log_every: int = 10
    checkpoint_every: int = 0
    """Steps between checkpoints (0: none)."""
    sdc_every: int = 0
    """Steps between replica weight-hash checks (0: off; the pack must be replicas)."""
    compile: bool = False
    """torch.compile the model (CUDA only)."""
    optimizer: str = "muon"
    """'muon' (Muon for hidden matrices, AdamW for the rest) or 'adamw' (AdamW for all)."""
    lr_scales: tuple[float, ...] | None = None
    """Per-proxy multipliers of both learning rates (a learning-rate sweep as one pack)."""
    eval_every: int = 0
    """Steps between held-out loss measurements for the validation curve (0: none)."""
    eval_curve_tokens: int = 8192
    """Held-out tokens per domain behind each point of the validation curve."""


@dataclass
class ProxyResult:
    seed: int
    status: str = "running"
    error: str | None = None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    val_bpb: dict[str, float] = field(default_factory=dict)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, mean held-out loss in nats over domains), every `eval_every` steps."""
    tokens: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    """What the `evaluate` hook measured on the final weights."""
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    """Final weights of this proxy alone (the pack axis removed)."""


class SilentCorruptionError(RuntimeError):
    def __init__(self, step: int, tensor: str, replica: int) -> None:
        super().__init__(
            f"replica {replica} diverged from replica 0 in '{tensor}' at step {step}"
            " (silent data corruption?)"
        )
        self.step, self.tensor, self.replica = step, tensor, replica


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def weight_digests(model: PackedLM) -> dict[str, list[str]]:
    """Per parameter, a hash of each proxy's slice (bit-exact)."""
    out = {}
    for name, p in model.named_parameters():
        data = p.detach().cpu().contiguous()
        out[name] = [
            hashlib.blake2b(data[i].numpy().tobytes(), digest_size=8).hexdigest()
            for i in range(data.shape[0])
        ]
    return out


def check_replicas(model: PackedLM, step: int) -> None:
    for name, digests in weight_digests(model).items():
        for r, d in enumerate(digests[1:], start=1):
            if d != digests[0]:
                raise SilentCorruptionError(step, name, r)


def proxy_state(model: PackedLM, p: int) -> dict[str, torch.Tensor]:
    return {k: v[p].detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate_bpb(
    model: PackedLM,
    val: Mapping[str, np.ndarray],
    bytes_per_token: Mapping[str, float],
    seq_len: int,
    batch: int,
    max_tokens: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Held-out bits per byte per domain for every proxy of the pack: domain -> (P,)."""
    out = {}
    model.eval()
    for domain, tokens in val.items():
        n = min(len(tokens) - 1, max_tokens) // seq_len
        if n == 0:
            out[domain] = torch.full((model.P,), float("nan"))
            continue
        starts = np.arange(n) * seq_len
        total = torch.zeros(model.P, dtype=torch.float64)
        for i in range(0, n, batch):
            idx = starts[i : i + batch, None] + np.arange(seq_len + 1)
            windows = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64)).to(device)
            ce, _ = model.losses(windows.unsqueeze(0).expand(model.P, -1, -1))
            total += ce.double().cpu() * len(idx)
        nats = total / n
        out[domain] = (nats / math.log(2) / bytes_per_token[domain]).float()
    model.train()
    return out


def _save(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train_pack(
    model_cfg: ModelConfig,
    loaders: Sequence[MixtureLoader],
    seeds: Sequence[int],
    cfg: TrainConfig = TrainConfig(),
    *,
    val: Mapping[str, np.ndarray] | None = None,
    bytes_per_token: Mapping[str, float] | None = None,
    checkpoint: Path | None = None,
    on_log: Callable[[int, list[float], float], None] | None = None,
    on_step: Callable[[int, PackedLM], None] | None = None,
    evaluate: Callable[[PackedLM], Mapping[str, np.ndarray]] | None = None,
    max_steps: int | None = None,
) -> list[ProxyResult]:
    """Train P proxies (P = len(seeds)), proxy p on `loaders[p]` from seed `seeds[p]`.

    `max_steps` stops early (for tests that interrupt a run); a later call with the same
    checkpoint resumes.
    """
    if len(loaders) != len(seeds):
        raise ValueError("one loader per seed")
    P = len(seeds)
    device = pick_device(cfg.device)
    steps = loaders[0].steps
    if any(lo.steps != steps or lo.batch_size != loaders[0].batch_size for lo in loaders):
        raise ValueError("loaders of a pack must share steps and batch size")
    model = PackedLM(model_cfg, list(seeds)).to(device)
    muon_params, adam_params = split_params(model)
    if cfg.optimizer == "adamw":
        muon_params, adam_params = [], muon_params + adam_params
    elif cfg.optimizer != "muon":
        raise ValueError(f"unknown optimizer '{cfg.optimizer}' (muon or adamw)")
    muon = (
        BatchedMuon(muon_params, lr=cfg.lr, weight_decay=cfg.weight_decay) if muon_params else None
    )
    adamw = BatchedAdamW(adam_params, lr=cfg.adam_lr, weight_decay=cfg.weight_decay)
    scales = torch.tensor(
        cfg.lr_scales if cfg.lr_scales is not None else [1.0] * P,
        device=device,
        dtype=torch.float32,
    )
    if scales.numel() != P:
        raise ValueError("lr_scales needs one value per proxy")
    results = [ProxyResult(seed=s) for s in seeds]
    active = torch.ones(P, device=device)
    start = 0
    seconds_before = 0.0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if list(state["seeds"]) != list(seeds) or state["steps"] != steps:
            raise ValueError(f"checkpoint {checkpoint} belongs to another run")
        model.load_state_dict(state["model"])
        if muon is not None:
            muon.load_state_dict(state["muon"])
        adamw.load_state_dict(state["adamw"])
        active = state["active"].to(device)
        start = int(state["step"])
        seconds_before = float(state["seconds"])
        for r, curve, status, error in zip(
            results, state["curves"], state["status"], state["errors"], strict=True
        ):
            r.loss_curve = [(int(s), float(v)) for s, v in curve]
            r.status, r.error = status, error or None
    if cfg.compile and device.type == "cuda":
        model.forward = torch.compile(model.forward)  # type: ignore[method-assign]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    t0 = time.perf_counter()
    tokens_per_step = loaders[0].batch_size * loaders[0].seq_len
    end = steps if max_steps is None else min(steps, max_steps)
    step = start
    for step in range(start, end):
        mult = lr_multiplier(step, steps, cfg.warmup_fraction, cfg.schedule)
        for g in muon.param_groups if muon is not None else []:
            g["lr"] = cfg.lr * mult
        for g in adamw.param_groups:
            g["lr"] = cfg.adam_lr * mult
        batch = torch.from_numpy(np.stack([lo.batch(step) for lo in loaders])).to(device)
        with autocast:
            ce, aux = model.losses(batch)
        bad = ~torch.isfinite(ce) & (active > 0)
        for p in torch.nonzero(bad).flatten().tolist():
            results[p].status = "failed"
            results[p].error = f"loss became {ce[p].item()} at step {step}"
            active[p] = 0.0
        if not bool(active.any()):
            break
        loss = torch.where(active > 0, ce + aux, torch.zeros_like(ce)).sum()
        model.zero_grad(set_to_none=True)
        loss.backward()
        clip_per_proxy(model.parameters(), cfg.grad_clip, P)
        if muon is not None:
            muon.step(proxy_scale=active * scales)
        adamw.step(proxy_scale=active * scales)
        for moe in model.moe_layers():
            moe.update_bias(model_cfg.bias_update_rate, active)
        if on_step is not None:
            on_step(step, model)
        if (step % cfg.log_every == 0) or step == steps - 1:
            values = ce.detach().float().cpu().tolist()
            for p, r in enumerate(results):
                if active[p] > 0:
                    r.loss_curve.append((step, values[p]))
            if on_log is not None:
                elapsed = time.perf_counter() - t0
                on_log(step, values, tokens_per_step * P * (step - start + 1) / max(elapsed, 1e-9))
        if (
            cfg.eval_every
            and val is not None
            and bytes_per_token is not None
            and ((step + 1) % cfg.eval_every == 0 or step == steps - 1)
        ):
            curve = evaluate_bpb(
                model,
                val,
                dict.fromkeys(val, 1 / math.log(2)),
                loaders[0].seq_len,
                cfg.eval_batch,
                cfg.eval_curve_tokens,
                device,
            )
            nats = torch.stack(list(curve.values())).mean(0)  # bytes_per_token=1/ln2 -> nats
            for p, r in enumerate(results):
                if active[p] > 0:
                    r.val_curve.append((step + 1, float(nats[p])))
        if cfg.sdc_every and (step + 1) % cfg.sdc_every == 0:
            check_replicas(model, step)
        done = step + 1
        if (
            checkpoint is not None
            and cfg.checkpoint_every
            and done % cfg.checkpoint_every == 0
            and done < steps
        ):
            _save(
                checkpoint,
                {
                    "seeds": list(seeds),
                    "steps": steps,
                    "step": done,
                    "model": model.state_dict(),
                    "muon": muon.state_dict() if muon is not None else {},
                    "adamw": adamw.state_dict(),
                    "active": active.cpu(),
                    "seconds": seconds_before + time.perf_counter() - t0,
                    "curves": [r.loss_curve for r in results],
                    "val_curves": [r.val_curve for r in results],
                    "status": [r.status for r in results],
                    "errors": [r.error or "" for r in results],
                },
            )
    finished = end == steps
    seconds = seconds_before + time.perf_counter() - t0
    if finished and val is not None and bytes_per_token is not None:
        bpb = evaluate_bpb(
            model, val, bytes_per_token, loaders[0].seq_len, cfg.eval_batch, cfg.eval_tokens, device
        )
        for p, r in enumerate(results):
            r.val_bpb = {d: float(v[p]) for d, v in bpb.items()}
    if finished and evaluate is not None:
        scores = evaluate(model)
        for p, r in enumerate(results):
            r.metrics = {k: float(v[p]) for k, v in scores.items()}
    for p, r in enumerate(results):
        r.seconds = seconds
        r.tokens = tokens_per_step * (min(end, steps))
        if r.status == "running" and finished:
            r.status = "done"
        if r.status != "failed":
            r.state = proxy_state(model, p)
    return results


def train_one(
    model_cfg: ModelConfig,
    loader: MixtureLoader,
    seed: int,
    cfg: TrainConfig = TrainConfig(),
    **kw: Any,
) -> ProxyResult:
    return train_pack(model_cfg, [loader], [seed], cfg, **kw)[0]
