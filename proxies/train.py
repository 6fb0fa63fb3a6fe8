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
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from proxies.alloc import keep_freed_pages
from proxies.files import atomic_save
from proxies.model import PackedLM
from proxies.optim import BatchedAdamW, BatchedMuon, clip_per_proxy, lr_multiplier, split_params
from proxies.presets import ModelConfig


class BatchSource(Protocol):
    """What training reads a proxy's data from (automixer's `BatchSource` is one): `steps`
    batches of `batch_size` windows of `seq_len + 1` tokens, the same batch for the same step."""

    steps: int
    batch_size: int
    seq_len: int

    def batch(self, step: int) -> np.ndarray: ...


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
    compile: bool | None = None
    """Compile the training step (loss, backward and optimizer update, `fullgraph=True`).
    None: on a CUDA device, not on a CPU (where the eager step is measured faster)."""
    micro_batch: int | None = None
    """Sequences per proxy in one forward and backward; the batch is split into micro-batches
    of this size and their gradients accumulated (where memory binds). None: the whole batch."""
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
    token_bytes: np.ndarray | None,
    seq_len: int,
    batch: int,
    max_tokens: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Held-out loss per domain for every proxy of the pack: domain -> (P,).

    With `token_bytes` (the UTF-8 bytes each token id stands for) it is bits per byte over the
    bytes of the tokens actually scored; without, nats per token."""
    out = {}
    model.eval()
    for domain, tokens in val.items():
        n = min(len(tokens) - 1, max_tokens) // seq_len
        if n == 0:
            out[domain] = torch.full((model.P,), float("nan"))
            continue
        starts = np.arange(n) * seq_len
        nats = torch.zeros(model.P, dtype=torch.float64)
        scored_bytes = 0.0
        for i in range(0, n, batch):
            idx = starts[i : i + batch, None] + np.arange(seq_len + 1)
            window = np.asarray(tokens[idx], dtype=np.int64)
            if token_bytes is not None:
                scored_bytes += float(token_bytes[window[:, 1:]].sum())
            windows = torch.from_numpy(window).to(device)
            ce, _, _ = model.losses(windows.unsqueeze(0).expand(model.P, -1, -1))
            nats += ce.double().cpu() * window[:, 1:].size
        if token_bytes is None:
            out[domain] = (nats / (n * seq_len)).float()
        else:
            out[domain] = (nats / math.log(2) / max(scored_bytes, 1.0)).float()
    model.train()
    return out


@dataclass
class _Optimizers:
    """Muon for the hidden matrices (none with optimizer='adamw'), AdamW for the rest, and
    each proxy's learning-rate multiplier."""

    muon: BatchedMuon | None
    adamw: BatchedAdamW
    scales: torch.Tensor

    @classmethod
    def build(cls, model: PackedLM, cfg: TrainConfig, device: torch.device) -> _Optimizers:
        muon_params, adam_params = split_params(model)
        if cfg.optimizer == "adamw":
            muon_params, adam_params = [], muon_params + adam_params
        elif cfg.optimizer != "muon":
            raise ValueError(f"unknown optimizer '{cfg.optimizer}' (muon or adamw)")
        muon = (
            BatchedMuon(muon_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            if muon_params
            else None
        )
        adamw = BatchedAdamW(adam_params, lr=cfg.adam_lr, weight_decay=cfg.weight_decay)
        scales = torch.tensor(
            cfg.lr_scales if cfg.lr_scales is not None else [1.0] * model.P,
            device=device,
            dtype=torch.float32,
        )
        if scales.numel() != model.P:
            raise ValueError("lr_scales needs one value per proxy")
        return cls(muon, adamw, scales)

    def init_state(self) -> None:
        if self.muon is not None:
            self.muon.init_state()
        self.adamw.init_state()

    def step(self, active: torch.Tensor, lr_mult: float | torch.Tensor) -> None:
        if self.muon is not None:
            self.muon.step(proxy_scale=active * self.scales, lr_mult=lr_mult)
        self.adamw.step(proxy_scale=active * self.scales, lr_mult=lr_mult)


@dataclass
class _PackState:
    """What a checkpoint holds beside the weights and optimizer states. `active`, `failed_at`
    and `bad_loss` live on the training device and are read only every `log_every` steps
    (`_read_status`): a step never waits for the host."""

    results: list[ProxyResult]
    active: torch.Tensor
    failed_at: torch.Tensor
    """(P,) the step at which each proxy's loss stopped being finite, -1 while it trains."""
    bad_loss: torch.Tensor
    """(P,) that loss."""
    step: int = 0
    seconds: float = 0.0

    @classmethod
    def new(cls, seeds: Sequence[int], device: torch.device) -> _PackState:
        P = len(seeds)
        return cls(
            [ProxyResult(seed=s) for s in seeds],
            torch.ones(P, device=device),
            torch.full((P,), -1, dtype=torch.long, device=device),
            torch.zeros(P, device=device),
        )


def _read_status(st: _PackState) -> bool:
    """Report the proxies that failed since the last read; False when none is left."""
    failed_at = st.failed_at.tolist()
    for r, at, loss in zip(st.results, failed_at, st.bad_loss.tolist(), strict=True):
        if at >= 0 and r.status != "failed":
            r.status = "failed"
            r.error = f"loss became {loss} at step {at}"
    return any(at < 0 for at in failed_at)


def _save_checkpoint(
    path: Path, model: PackedLM, opt: _Optimizers, st: _PackState, seeds: Sequence[int], steps: int
) -> None:
    _read_status(st)
    atomic_save(
        path,
        {
            "seeds": list(seeds),
            "steps": steps,
            "step": st.step,
            "model": model.state_dict(),
            "muon": opt.muon.state_dict() if opt.muon is not None else {},
            "adamw": opt.adamw.state_dict(),
            "active": st.active.cpu(),
            "failed_at": st.failed_at.cpu(),
            "bad_loss": st.bad_loss.cpu(),
            "seconds": st.seconds,
            "curves": [r.loss_curve for r in st.results],
            "val_curves": [r.val_curve for r in st.results],
            "status": [r.status for r in st.results],
            "errors": [r.error or "" for r in st.results],
        },
    )


def _slice_state(value: Any, p: int) -> Any:
    """Proxy p's share of a saved pack: every tensor with a leading axis is the pack's (the
    model's and the optimizers' states alike); a 0-d tensor (AdamW's step) is shared."""
    if isinstance(value, torch.Tensor):
        return value[p : p + 1].clone() if value.dim() else value.clone()
    if isinstance(value, dict):
        return {k: _slice_state(v, p) for k, v in value.items()}
    return value


def _stack_state(values: Sequence[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(values)) if first.dim() else first
    if isinstance(first, dict):
        return {k: _stack_state([v[k] for v in values]) for k in first}
    return first


def checkpoint_parts(path: Path) -> list[dict[str, Any]]:
    """A pack's checkpoint cut into one checkpoint of one proxy each (what a branch resumes
    from), in the pack's order."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    P = len(saved["seeds"])
    per_proxy = ("curves", "val_curves", "status", "errors")
    return [
        {
            **{k: v for k, v in saved.items() if k not in per_proxy and k != "seeds"},
            "seeds": [saved["seeds"][p]],
            "model": _slice_state(saved["model"], p),
            "muon": _slice_state(saved["muon"], p),
            "adamw": _slice_state(saved["adamw"], p),
            **{k: _slice_state(saved[k], p) for k in ("active", "failed_at", "bad_loss")},
            **{k: [saved[k][p]] for k in per_proxy},
        }
        for p in range(P)
    ]


def save_parts(path: Path, parts: Sequence[Mapping[str, Any]]) -> Path:
    """One checkpoint of one proxy (from `checkpoint_parts`) per part, as a pack's checkpoint
    that `train_pack` resumes: the parts must stand at the same step of the same length."""
    if len({(p["step"], p["steps"]) for p in parts}) != 1:
        raise ValueError("a pack resumes from parts at one step of one length")
    lists = ("seeds", "curves", "val_curves", "status", "errors")
    joined = {k: v for k, v in parts[0].items() if k not in lists}
    for k in ("model", "muon", "adamw", "active", "failed_at", "bad_loss"):
        joined[k] = _stack_state([p[k] for p in parts])
    for k in lists:
        joined[k] = [x for p in parts for x in p[k]]
    joined["seconds"] = max(float(p["seconds"]) for p in parts)
    atomic_save(path, joined)
    return path


def _resume(
    path: Path,
    model: PackedLM,
    opt: _Optimizers,
    st: _PackState,
    seeds: Sequence[int],
    steps: int,
    device: torch.device,
) -> None:
    """Load a checkpoint written by `_save_checkpoint` into the model, optimizers and state."""
    saved = torch.load(path, map_location=device, weights_only=True)
    if list(saved["seeds"]) != list(seeds) or saved["steps"] != steps:
        raise ValueError(f"checkpoint {path} belongs to another run")
    model.load_state_dict(saved["model"])
    if opt.muon is not None:
        opt.muon.load_state_dict(saved["muon"])
    opt.adamw.load_state_dict(saved["adamw"])
    st.active = saved["active"].to(device)
    st.failed_at = saved["failed_at"].to(device)
    st.bad_loss = saved["bad_loss"].to(device)
    st.step = int(saved["step"])
    st.seconds = float(saved["seconds"])
    for r, curve, status, error in zip(
        st.results, saved["curves"], saved["status"], saved["errors"], strict=True
    ):
        r.loss_curve = [(int(s), float(v)) for s, v in curve]
        r.status, r.error = status, error or None


def masked_loss(
    model: PackedLM, batch_PBL: torch.Tensor, active_P: torch.Tensor, compiled: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The summed loss of the proxies still training whose loss is finite (a proxy whose loss
    is not contributes nothing), the per-proxy losses (P,) and the MoE loads (L, P, E)."""
    ce, aux, loads = model.losses(batch_PBL, compiled)
    keep = (active_P > 0) & torch.isfinite(ce)
    return torch.where(keep, ce + aux, torch.zeros_like(ce)).sum(), ce.detach(), loads


def clip_gradients(model: PackedLM, grad_clip: float) -> None:
    clip_per_proxy(model.parameters(), grad_clip, model.P)


def optimizer_step(
    model: PackedLM,
    opt: _Optimizers,
    active: torch.Tensor,
    mult: float | torch.Tensor,
    loads_LPE: torch.Tensor,
) -> None:
    """Step both optimizers (`mult` the schedule's multiplier) and move the routing biases
    toward balance."""
    opt.step(active, mult)
    model.update_bias(loads_LPE, active)


class _Step:
    """One optimizer step of every active proxy, over `micro` micro-batches of the batch
    (gradients accumulated). A proxy whose loss is not finite stops (its learning rate drops to
    0) and is recorded on the device. Compiled (`TrainConfig.compile`), the model runs by
    regions (`PackedLM.compile_regions`: one compiled block reused by every layer of its kind,
    and the output layer with the loss), each with `fullgraph=True` (a graph break is an
    error, not a slow path), so the compile time does not grow with the depth. The gradient
    clipping and the optimizers' update stay eager: they are multi-tensor (`torch._foreach_*`)
    operations and one stacked Newton-Schulz per matrix shape, a few dozen kernels, where
    compiling them cost more than the rest of the step together (an 8-layer proxy on the CPU:
    81 s for the two graphs against 23 s for the model's regions)."""

    def __init__(
        self, model: PackedLM, opt: _Optimizers, cfg: TrainConfig, compiled: bool, micro: int
    ) -> None:
        self.model, self.opt, self.cfg, self.micro = model, opt, cfg, micro
        self.compiled = compiled
        if compiled:
            opt.init_state()
            # static shapes, compiled again for each new pack shape (a sweep's last pack may
            # be smaller; GPU sizing tries two): allow that many
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            model.compile_regions()

    def __call__(
        self, st: _PackState, batch_PBL: torch.Tensor, step: int, mult: float | torch.Tensor
    ) -> torch.Tensor:
        model = self.model
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if batch_PBL.device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )
        model.zero_grad(set_to_none=True)
        ce_P: torch.Tensor | None = None
        loads: torch.Tensor | None = None
        for chunk in batch_PBL.chunk(self.micro, dim=1):
            with autocast:
                loss, ce, load = masked_loss(model, chunk, st.active, self.compiled)
            (loss / self.micro).backward()
            ce_P = ce if ce_P is None else ce_P + ce
            loads = load if loads is None else loads + load
        assert ce_P is not None and loads is not None
        ce_P = ce_P / self.micro
        bad = ~torch.isfinite(ce_P) & (st.active > 0)
        st.failed_at = torch.where(bad, step, st.failed_at)
        st.bad_loss = torch.where(bad, ce_P, st.bad_loss)
        st.active = st.active * (~bad)
        clip_gradients(model, self.cfg.grad_clip)
        optimizer_step(model, self.opt, st.active, mult, loads)
        return ce_P


def _record_val_curve(
    model: PackedLM, st: _PackState, val: Mapping[str, np.ndarray], cfg: TrainConfig, seq_len: int
) -> None:
    """Mean held-out loss (nats) over domains of every active proxy, for the validation curve."""
    device = next(model.parameters()).device
    curve = evaluate_bpb(
        model,
        val,
        None,  # nats per token
        seq_len,
        cfg.eval_batch,
        cfg.eval_curve_tokens,
        device,
    )
    nats = torch.stack(list(curve.values())).mean(0)
    for p, r in enumerate(st.results):
        if st.active[p] > 0:
            r.val_curve.append((st.step, float(nats[p])))


def _final_evaluation(
    model: PackedLM,
    results: list[ProxyResult],
    cfg: TrainConfig,
    seq_len: int,
    val: Mapping[str, np.ndarray] | None,
    token_bytes: np.ndarray | None,
    evaluate: Callable[[PackedLM], Mapping[str, np.ndarray]] | None,
) -> None:
    """Held-out bits per byte per domain, then whatever `evaluate` measures, per proxy."""
    device = next(model.parameters()).device
    if val is not None and token_bytes is not None:
        bpb = evaluate_bpb(
            model, val, token_bytes, seq_len, cfg.eval_batch, cfg.eval_tokens, device
        )
        for p, r in enumerate(results):
            r.val_bpb = {d: float(v[p]) for d, v in bpb.items()}
    if evaluate is not None:
        scores = evaluate(model)
        for p, r in enumerate(results):
            r.metrics = {k: float(v[p]) for k, v in scores.items()}


def train_pack(
    model_cfg: ModelConfig,
    loaders: Sequence[BatchSource],
    seeds: Sequence[int],
    cfg: TrainConfig = TrainConfig(),
    *,
    val: Mapping[str, np.ndarray] | None = None,
    token_bytes: np.ndarray | None = None,
    checkpoint: Path | None = None,
    on_log: Callable[[int, list[float], float], None] | None = None,
    on_step: Callable[[int, PackedLM], None] | None = None,
    evaluate: Callable[[PackedLM], Mapping[str, np.ndarray]] | None = None,
    max_steps: int | None = None,
) -> list[ProxyResult]:
    """Train P proxies (P = len(seeds)), proxy p on `loaders[p]` from seed `seeds[p]`.

    `max_steps` stops early (a branched sweep's main phase, tests that interrupt a run), saving
    `checkpoint` there; a later call with the same checkpoint resumes.
    """
    if len(loaders) != len(seeds):
        raise ValueError("one loader per seed")
    P = len(seeds)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        keep_freed_pages()  # the step's buffers reuse their pages (proxies.alloc)
    steps, seq_len = loaders[0].steps, loaders[0].seq_len
    if any(lo.steps != steps or lo.batch_size != loaders[0].batch_size for lo in loaders):
        raise ValueError("loaders of a pack must share steps and batch size")
    model = PackedLM(model_cfg, list(seeds)).to(device)
    opt = _Optimizers.build(model, cfg, device)
    st = _PackState.new(seeds, device)
    if checkpoint is not None and checkpoint.is_file():
        _resume(checkpoint, model, opt, st, seeds, steps, device)
    compiled = cfg.compile if cfg.compile is not None else device.type == "cuda"
    if compiled or device.type != "cpu":
        model.device_layout(seq_len, device)
    if compiled and not model.compilable():
        reason = (
            f"the compiled step needs torch's grouped GEMM (torch >= 2.10 with "
            f"torch.nn.functional.grouped_mm, compute capability >= 8.0 on CUDA, widths that "
            f"are multiples of 8); here: torch {torch.__version__} on {device}, widths "
            f"{model_cfg.d_model} and {model_cfg.expert_hidden}"
        )
        if cfg.compile:
            raise ValueError(reason)
        warnings.warn(f"{reason}: training eager", RuntimeWarning, stacklevel=2)
        compiled = False
    step_fn = _Step(model, opt, cfg, compiled, _micro_steps(cfg, loaders[0].batch_size))
    # the schedule's multipliers: device tensors where the step must not wait for the host
    # with training phases, warmup-stable-decay decays over the last phase
    decay_start = getattr(loaders[0], "decay_start", None)
    schedule = [
        lr_multiplier(i, steps, cfg.warmup_fraction, cfg.schedule, decay_start=decay_start)
        for i in range(steps)
    ]
    mults: Sequence[float] | torch.Tensor = (
        torch.tensor(schedule, device=device) if device.type != "cpu" or compiled else schedule
    )
    t0 = time.perf_counter()
    seconds_before, start = st.seconds, st.step
    tokens_per_step = loaders[0].batch_size * seq_len
    end = steps if max_steps is None else min(steps, max_steps)
    for step in range(start, end):
        batch = _to_device(np.stack([lo.batch(step) for lo in loaders]), device)
        ce = step_fn(st, batch, step, mults[step])
        if on_step is not None:
            on_step(step, model)
        st.step = step + 1
        st.seconds = seconds_before + time.perf_counter() - t0
        if (step % cfg.log_every == 0) or step == steps - 1:
            training = _read_status(st)
            values = ce.float().cpu().tolist()
            for p, r in enumerate(st.results):
                if r.status != "failed":
                    r.loss_curve.append((step, values[p]))
            if on_log is not None:
                elapsed = time.perf_counter() - t0
                on_log(step, values, tokens_per_step * P * (step - start + 1) / max(elapsed, 1e-9))
            if not training:
                break
        if (
            cfg.eval_every
            and val is not None
            and (st.step % cfg.eval_every == 0 or st.step == steps)
        ):
            _record_val_curve(model, st, val, cfg, seq_len)
        if cfg.sdc_every and st.step % cfg.sdc_every == 0:
            check_replicas(model, step)
        save = cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and st.step < steps
        if checkpoint is not None and (save or st.step == end < steps):  # or stopped early
            _save_checkpoint(checkpoint, model, opt, st, seeds, steps)
    _read_status(st)
    finished = end == steps
    seconds = seconds_before + time.perf_counter() - t0
    if finished:
        _final_evaluation(model, st.results, cfg, seq_len, val, token_bytes, evaluate)
    for p, r in enumerate(st.results):
        r.seconds = seconds
        r.tokens = tokens_per_step * end
        if r.status == "running" and finished:
            r.status = "done"
        if r.status != "failed":
            r.state = proxy_state(model, p)
    return st.results


def _micro_steps(cfg: TrainConfig, batch_size: int) -> int:
    """How many micro-batches a step's batch is split into (gradient accumulation)."""
    micro = cfg.micro_batch or batch_size
    if micro > batch_size or batch_size % micro:
        raise ValueError(f"micro_batch {micro} must divide the batch size {batch_size}")
    return batch_size // micro


def _to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """A batch on the training device; to a GPU from pinned memory without waiting for the
    copy (the caching host allocator keeps the buffer until the copy is done)."""
    tokens = torch.from_numpy(batch)
    if device.type == "cuda":
        return tokens.pin_memory().to(device, non_blocking=True)
    return tokens.to(device)


def train_one(
    model_cfg: ModelConfig,
    loader: BatchSource,
    seed: int,
    cfg: TrainConfig = TrainConfig(),
    **kw: Any,
) -> ProxyResult:
    return train_pack(model_cfg, [loader], [seed], cfg, **kw)[0]
