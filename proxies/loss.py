"""The output layer and cross-entropy, fused and chunked over tokens (for the CPU).

Unfused, a step holds the whole (tokens x vocabulary) logits, their log-softmax and its
gradient: 17 MB each for the quickstart's 2048 tokens at vocabulary 2048, large enough that
glibc serves them with fresh mmap'd pages, which the kernel zeroes on every step. Here the
logits of `chunk` tokens at a time are made, turned into the loss and, when a gradient is
wanted, straight into the gradients of the hidden states and of the output matrix, then
dropped: no buffer larger than chunk x vocabulary, and the same three matrix products as
autograd's. The backward pass only scales the saved gradients.
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK_BYTES = 4 * 2**20
"""Largest chunk of float32 logits: well under glibc's mmap threshold once it has grown."""


def chunk_tokens(vocab: int) -> int:
    return max(1, CHUNK_BYTES // (4 * vocab))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, grads: bool
    ) -> torch.Tensor:
        n = x.shape[0]
        step = chunk_tokens(w.shape[0])
        total = x.new_zeros((), dtype=torch.float32)
        grad_x = torch.empty_like(x) if grads else None
        grad_w = torch.zeros_like(w) if grads else None
        for i in range(0, n, step):
            xc, tc = x[i : i + step], targets[i : i + step]
            logits = (xc @ w.T).float()
            picked = logits.gather(1, tc[:, None]).squeeze(1)
            # log-sum-exp in one pass over the chunk, in place: the exponentials made here are
            # the softmax's numerators (torch.logsumexp would make and drop a second copy)
            top = logits.amax(dim=-1, keepdim=True)
            exps = logits.sub_(top).exp_()
            sums = exps.sum(dim=-1)
            total += (top.squeeze(1) + sums.log() - picked).sum()
            if grads:
                assert grad_x is not None and grad_w is not None
                # d(sum of losses)/d(logits) = softmax - one-hot
                probs = exps.div_(sums[:, None])
                probs.scatter_add_(1, tc[:, None], probs.new_full((len(tc), 1), -1.0))
                probs = probs.to(x.dtype)
                grad_x[i : i + step] = probs @ w
                grad_w.addmm_(probs.T, xc)
        if grads:
            ctx.save_for_backward(grad_x, grad_w)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        grad_x, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        return grad_x * scale, grad_w * scale, None, None


def linear_cross_entropy(x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of the logits x @ w.T (x: (N, D), w: (V, D)) against
    `targets` (N,), equal to `F.cross_entropy(x @ w.T, targets)` and differentiable in x and w,
    without ever holding all N x V logits."""
    grads = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
    out: torch.Tensor = _LinearCrossEntropy.apply(x, w, targets, grads)
    return out
