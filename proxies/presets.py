"""Proxy model configurations and the named presets (from ~1M active parameters on a CPU to
~100M on a GPU), with parameter counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 4096
    d_model: int = 96
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    """Grouped-query attention: key/value heads shared by n_heads / n_kv_heads query heads."""
    window: int = 64
    """Sliding-window size of the local attention layers."""
    global_every: int = 4
    """Every `global_every`-th layer attends globally; the others in a sliding window (3:1)."""
    rope_base_local: float = 10_000.0
    rope_base_global: float = 500_000.0
    dense: bool = False
    """A dense SwiGLU feed-forward instead of the MoE (for comparison)."""
    n_experts: int = 8
    top_k: int = 2
    n_shared: int = 1
    """Shared experts, always on."""
    expert_hidden: int = 96
    dense_hidden: int = 288
    """Hidden size of the dense variant's feed-forward (3x d_model keeps active params close)."""
    route_scale: float = 1.0
    bias_update_rate: float = 1e-3
    """Auxiliary-loss-free balancing: step of the per-expert bias toward uniform load."""
    aux_loss_coef: float = 0.0
    """Optional sequence-level balance loss (0 disables it)."""
    z_loss_coef: float = 0.0
    """Optional router z-loss (0 disables it)."""
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        if self.n_heads % self.n_kv_heads:
            raise ValueError("n_heads must be a multiple of n_kv_heads")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("the head dimension must be even (rotary embeddings)")
        if not self.dense and not 1 <= self.top_k <= self.n_experts:
            raise ValueError("top_k must be between 1 and n_experts")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def is_global(self, layer: int) -> bool:
        return (layer + 1) % self.global_every == 0

    def param_counts(self) -> dict[str, int]:
        """Total and active (per token) parameters, embeddings and head included."""
        d, hd = self.d_model, self.head_dim
        attn = d * self.n_heads * hd * 2 + d * self.n_kv_heads * hd * 2 + 2 * hd
        norms = 2 * d
        if self.dense:
            ffn_total = ffn_active = 3 * d * self.dense_hidden
        else:
            expert = 3 * d * self.expert_hidden
            router = d * self.n_experts
            ffn_total = (self.n_experts + self.n_shared) * expert + router
            ffn_active = (self.top_k + self.n_shared) * expert + router
        emb = 2 * self.vocab_size * d + d
        return {
            "total": emb + self.n_layers * (attn + norms + ffn_total),
            "active": emb + self.n_layers * (attn + norms + ffn_active),
            "non_embedding_active": self.n_layers * (attn + norms + ffn_active),
        }

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: the matmuls the model needs, forward and backward (3 x
        the forward's): attention projections, attention scores and values over the keys
        each query attends to on average (causal, over the window for sliding-window
        layers), the k routed experts used and the shared ones, the router and the output
        layer. The input embedding is a lookup and does not count."""
        d, hd = self.d_model, self.head_dim
        proj = d * hd * (2 * self.n_heads + 2 * self.n_kv_heads)
        if self.dense:
            ffn = 3 * d * self.dense_hidden
        else:
            ffn = (self.top_k + self.n_shared) * 3 * d * self.expert_hidden + d * self.n_experts
        forward = 2.0 * (self.n_layers * (proj + ffn) + self.vocab_size * d)
        for layer in range(self.n_layers):
            span = seq_len if self.is_global(layer) else min(self.window, seq_len)
            # query i attends to min(i + 1, span) keys: the mean over the sequence
            attended = (span * (span + 1) / 2 + span * (seq_len - span)) / seq_len
            forward += 2 * 2 * self.n_heads * hd * attended  # scores, then weighted values
        return 3 * forward

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


PRESETS: dict[str, ModelConfig] = {
    # ~1.2M active parameters: the CPU quickstart.
    "quickstart": ModelConfig(),
    # ~0.5M active: unit tests and smoke runs.
    "tiny": ModelConfig(
        d_model=64,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        n_experts=4,
        top_k=2,
        expert_hidden=64,
        dense_hidden=192,
        window=32,
    ),
    # ~5M active: a larger CPU proxy (validation runs).
    "small": ModelConfig(
        d_model=192,
        n_layers=4,
        n_heads=6,
        n_kv_heads=2,
        expert_hidden=192,
        dense_hidden=576,
        window=128,
    ),
    # ~39M active (88M total): a GPU proxy.
    "gpu-40m": ModelConfig(
        vocab_size=32_768,
        d_model=384,
        n_layers=8,
        n_heads=6,
        n_kv_heads=2,
        n_experts=16,
        top_k=2,
        expert_hidden=384,
        dense_hidden=1152,
        window=512,
    ),
    # ~100M active: the largest GPU proxy.
    "gpu-100m": ModelConfig(
        vocab_size=32_768,
        d_model=768,
        n_layers=12,
        n_heads=12,
        n_kv_heads=4,
        n_experts=32,
        top_k=2,
        expert_hidden=512,
        dense_hidden=2304,
        window=1024,
    ),
}


def get_preset(name: str, **overrides: object) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown proxy preset '{name}'; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)  # type: ignore[arg-type]
