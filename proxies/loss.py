"""The output layer and cross-entropy, fused and chunked over tokens, for a pack of proxies.

Unfused, a step holds the whole (tokens x vocabulary) logits, their log-softmax and its
gradient. On a CPU that is 17 MB each for the quickstart's 2048 tokens at vocabulary 2048, large
enough that glibc serves them with fresh mmap'd pages, which the kernel zeroes on every step; on
a GPU it is 4.3 GB of bf16 logits per micro-batch for a pack of 8 `gpu-40m` proxies (8 x 8,192
tokens at vocabulary 32,768), read and written several times by the loss and its backward.
Here the logits of `chunk` tokens of every proxy at a time are made, turned into the loss and,
when a gradient is wanted, straight into the gradients of the hidden states and of the output
matrices, then dropped: no buffer larger than one chunk's float32 logits, and the same three
matrix products as autograd's. The backward pass only scales the saved gradients.

The products run in `dtype` (bfloat16 on a GPU, as autocast would; the input's on a CPU) and
the softmax, the loss and the output matrices' gradient accumulate in float32, whatever
autocast says around the call.

Shapes: P pack, N tokens per proxy, D width, V vocabulary, C chunk of tokens.
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK_BYTES = {"cpu": 4 * 2**20, "cuda": 2**30}
"""Largest chunk of float32 logits (all proxies of the pack together), per device type: on a
CPU well under glibc's mmap threshold once it has grown; on a GPU large enough that each
chunk's products fill the chip, a few per micro-batch."""


def chunk_tokens(vocab: int, pack: int, device: torch.device) -> int:
    """Tokens per proxy in one chunk of the fused loss."""
    budget = CHUNK_BYTES.get(device.type, CHUNK_BYTES["cpu"])
    return max(1, budget // (4 * vocab * pack))


class _PackedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x_PND: torch.Tensor,
        w_PVD: torch.Tensor,
        targets_PN: torch.Tensor,
        grads: bool,
        step: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        P, N, _ = x_PND.shape
        with torch.autocast(x_PND.device.type, enabled=False):
            w = w_PVD.to(dtype)
            total_P = x_PND.new_zeros(P, dtype=torch.float32)
            grad_x = torch.empty_like(x_PND) if grads else None
            grad_w = torch.zeros_like(w_PVD, dtype=torch.float32) if grads else None
            for i in range(0, N, step):
                xc_PCD = x_PND[:, i : i + step].to(dtype)
                tc_PC = targets_PN[:, i : i + step]
                logits_PCV = torch.bmm(xc_PCD, w.transpose(1, 2)).float()
                picked_PC = logits_PCV.gather(2, tc_PC[..., None]).squeeze(2)
                # log-sum-exp in one pass over the chunk, in place: the exponentials made here
                # are the softmax's numerators (torch.logsumexp would make a second copy)
                top_PC1 = logits_PCV.amax(dim=-1, keepdim=True)
                exps = logits_PCV.sub_(top_PC1).exp_()
                sums_PC = exps.sum(dim=-1)
                total_P += (top_PC1.squeeze(2) + sums_PC.log() - picked_PC).sum(1)
                if grads:
                    assert grad_x is not None and grad_w is not None
                    # d(sum of losses)/d(logits) = softmax - one-hot
                    probs = exps.div_(sums_PC[..., None])
                    probs.scatter_add_(2, tc_PC[..., None], probs.new_full((*tc_PC.shape, 1), -1.0))
                    probs = probs.to(dtype)
                    grad_x[:, i : i + step] = torch.bmm(probs, w).to(grad_x.dtype)
                    if dtype == torch.float32:
                        grad_w.baddbmm_(probs.transpose(1, 2), xc_PCD)
                    else:
                        grad_w += torch.bmm(probs.transpose(1, 2), xc_PCD).float()
        if grads:
            assert grad_w is not None
            ctx.save_for_backward(grad_x, grad_w.to(w_PVD.dtype))
        ctx.n = N
        return total_P / N

    @staticmethod
    def backward(ctx: Any, grad_P: torch.Tensor) -> tuple[Any, ...]:
        grad_x, grad_w = ctx.saved_tensors
        scale = (grad_P / ctx.n)[:, None, None]
        return grad_x * scale.to(grad_x.dtype), grad_w * scale, None, None, None, None


def packed_cross_entropy(
    x_PND: torch.Tensor,
    w_PVD: torch.Tensor,
    targets_PN: torch.Tensor,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Mean cross-entropy (nats) per proxy (P,) of the logits x[p] @ w[p].T against
    `targets[p]`, equal to `F.cross_entropy(x[p] @ w[p].T, targets[p])` for each p and
    differentiable in x and w, without ever holding all N x V logits. `dtype`: the products'
    precision (None: bfloat16 on CUDA, the input's elsewhere)."""
    if dtype is None:
        dtype = torch.bfloat16 if x_PND.is_cuda else x_PND.dtype
    grads = torch.is_grad_enabled() and (x_PND.requires_grad or w_PVD.requires_grad)
    step = chunk_tokens(w_PVD.shape[1], x_PND.shape[0], x_PND.device)
    out: torch.Tensor = _PackedLinearCrossEntropy.apply(
        x_PND, w_PVD, targets_PN, grads, step, dtype
    )
    return out


def linear_cross_entropy(x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One proxy's mean cross-entropy (nats) of x @ w.T (x: (N, D), w: (V, D)) against
    `targets` (N,): `packed_cross_entropy` for a pack of one."""
    return packed_cross_entropy(x[None], w[None], targets[None])[0]
