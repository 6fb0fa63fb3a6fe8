"""Many exact Gaussian processes learned at once: one batched Cholesky per step.

The GP surrogate's model (`automixer.surrogates.gp`): a constant times an RBF kernel over the
transformed weights (one length scale per domain, or one for all) plus white noise, on
standardised targets, its hyperparameters in scikit-learn's log space and bounds:

    theta = [log c, log l_1 .. log l_L, log s]     (log s absent when the noise is fixed)
    K = c exp(-|z/l - z'/l|^2 / 2) + s I + alpha I

A problem is one (runs, targets) set sharing a kernel: a target of a per-target GP, all
targets of a shared one, each of them again on every cross-validation fold. B problems of up to
n runs are padded to (B, n, n): a padded run's row and column of K are those of the identity and
its targets are 0, so it adds nothing to the fit term or the log-determinant. The negative log
marginal likelihood of each problem (summed over its targets) and its gradient (written out,
float64; see `_nll`) go to that problem's own L-BFGS-B, scikit-learn's optimiser with its
bounds; the optimisers run in lockstep, so that each round of their calls is one batched evaluation
(`learn`). A joint L-BFGS over the sum, tried first, took 1,244 iterations where a problem
alone takes a few hundred: its curvature pairs mix unrelated problems.

`log_marginal_likelihood` computes one problem's value and gradient the same way: the tests
hold it to scikit-learn's, and the learned hyperparameters' fit to its optimiser's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

ALPHA = 1e-10
"""scikit-learn's GaussianProcessRegressor's default jitter on the diagonal."""
NOT_FINITE = 1e25
"""What a failed Cholesky (K not positive definite at this theta) reports to the optimiser."""


@dataclass(frozen=True)
class Problem:
    Z: np.ndarray
    """(n, d) inputs (transformed weights)."""
    Y: np.ndarray
    """(n, m) standardised targets sharing the kernel."""
    theta: np.ndarray
    """(p,) starting hyperparameters, in the layout above."""


def _nll(
    theta: torch.Tensor,
    Z: torch.Tensor,
    Y: torch.Tensor,
    mask: torch.Tensor,
    sizes: torch.Tensor,
    outputs: torch.Tensor,
    lengths: int,
    noise: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative log marginal likelihood of each problem (B,) and its gradient in theta (B, p):
    theta (B, p), Z (B, n, d), Y (B, n, m) zero-padded, mask (B, n) true on real runs, sizes
    (B,) real runs, outputs (B,) real targets (padded targets are zero columns).

    The gradient is scikit-learn's, 0.5 tr((a a^T - m K^-1) dK/dtheta) per problem (a =
    K^-1 y), written out for this kernel: with W = (a a^T - m K^-1) o R (R the RBF part),
    d/dlog c = c sum W, d/dlog l_d = c sum_ij W_ij (u_id - u_jd)^2 (u = z / l), which is
    2 sum_i u_id^2 (sum_j W_ij) - 2 sum_i u_id (W u)_id: no (n, n, d) tensor."""
    B, _, d = Z.shape
    c = theta[:, 0].exp()
    ell = theta[:, 1 : 1 + lengths].exp()  # (B, L), L = d or 1
    s = theta[:, 1 + lengths].exp() if noise is None else theta.new_full((B,), noise)
    maskf = mask.to(Z.dtype)
    pair = maskf[:, :, None] * maskf[:, None, :]
    U = Z / ell[:, None, :]
    sq = (U * U).sum(-1)
    # R = exp(-|u_i - u_j|^2 / 2) from one product, in place; exactly 1 on a real diagonal
    R = torch.bmm(U, U.transpose(1, 2))
    R.sub_(0.5 * sq[:, :, None]).sub_(0.5 * sq[:, None, :]).clamp_(max=0).exp_().mul_(pair)
    R.diagonal(dim1=1, dim2=2).copy_(maskf)
    K = R * c[:, None, None]
    # a padded run's row and column are the identity's
    K.diagonal(dim1=1, dim2=2).add_(torch.where(mask, (s + ALPHA)[:, None], 1.0))
    L, info = torch.linalg.cholesky_ex(K)
    A = torch.cholesky_solve(Y, L)
    logdet = torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)
    value = 0.5 * (Y * A).sum((1, 2)) + outputs * (logdet + 0.5 * sizes * math.log(2 * math.pi))
    Kinv = torch.cholesky_inverse(L)
    W = torch.bmm(A, A.transpose(1, 2)).sub_(Kinv * outputs[:, None, None])
    trace = torch.diagonal(W, dim1=1, dim2=2).mul(maskf).sum(1)  # tr(a a^T - m K^-1), real runs
    W.mul_(R)  # R is 0 wherever a padded run is involved
    grad_c = -0.5 * c * W.sum((1, 2))
    rows = W.sum(2)
    per_dim = 2 * (U * U * rows[:, :, None]).sum(1) - 2 * (U * torch.bmm(W, U)).sum(1)
    if lengths != d:  # one length scale for every dimension
        per_dim = per_dim.sum(1, keepdim=True)
    columns = [grad_c[:, None], -0.5 * c[:, None] * per_dim]
    if noise is None:
        columns.append((-0.5 * s * trace)[:, None])
    grad = torch.cat(columns, 1)
    bad = info != 0  # not positive definite at this theta: a wall for the optimiser
    value = torch.where(bad, torch.full_like(value, NOT_FINITE), value)
    return value, torch.where(bad[:, None], torch.zeros_like(grad), grad)


def _pad(problems: Sequence[Problem]) -> tuple[torch.Tensor, ...]:
    B = len(problems)
    n = max(len(p.Z) for p in problems)
    d = problems[0].Z.shape[1]
    m = max(p.Y.shape[1] for p in problems)
    Z = np.zeros((B, n, d))
    Y = np.zeros((B, n, m))
    mask = np.zeros((B, n), dtype=bool)
    for b, p in enumerate(problems):
        k = len(p.Z)
        Z[b, :k], Y[b, :k, : p.Y.shape[1]], mask[b, :k] = p.Z, p.Y, True
    sizes = np.array([len(p.Z) for p in problems], dtype=np.float64)
    outputs = np.array([p.Y.shape[1] for p in problems], dtype=np.float64)
    return tuple(torch.from_numpy(a) for a in (Z, Y, mask, sizes, outputs))


def log_marginal_likelihood(
    theta: np.ndarray, Z: np.ndarray, Y: np.ndarray, noise: float | None = None
) -> tuple[float, np.ndarray]:
    """One problem's log marginal likelihood and its gradient in theta (scikit-learn's
    `log_marginal_likelihood(theta, eval_gradient=True)` for the same kernel)."""
    Zt, Yt, mask, sizes, outputs = _pad([Problem(Z, Y.reshape(len(Z), -1), theta)])
    th = torch.tensor(theta[None, :], dtype=torch.float64)
    value, grad = _nll(th, Zt, Yt, mask, sizes, outputs, len(theta) - 1 - (noise is None), noise)
    return -float(value[0]), -grad[0].numpy()


class _Lockstep:
    """B optimisers, one thread each, whose objective calls are evaluated together: each call
    posts its point and waits; the evaluating thread (the caller of `learn`) waits until every
    optimiser still running has posted, evaluates the whole batch (one batched Cholesky) and
    hands the answers back. The evaluation stays in one thread, so its memory does too (torch
    tensors made in fifteen threads spread over fifteen malloc arenas: +250 MB)."""

    def __init__(self, B: int) -> None:
        self.running = set(range(B))
        self.asked: dict[int, np.ndarray] = {}
        self.answers: dict[int, tuple[float, np.ndarray]] = {}
        self.cond = threading.Condition()
        self.rounds = 0
        self.error: BaseException | None = None

    def ask(self, b: int, x: np.ndarray) -> tuple[float, np.ndarray]:
        with self.cond:
            self.asked[b] = x
            self.cond.notify_all()
            while b not in self.answers and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error
            return self.answers.pop(b)

    def finish(self, b: int) -> None:
        with self.cond:
            self.running.discard(b)
            self.cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.cond:
            self.error = error
            self.cond.notify_all()

    def next_batch(self) -> dict[int, np.ndarray] | None:
        """The next round's points, once every running optimiser has posted; None when all
        have finished (or one failed)."""
        with self.cond:
            while self.error is None and (not self.asked or len(self.asked) < len(self.running)):
                if not self.running:
                    return None
                self.cond.wait()
            if self.error is not None:
                return None
            batch, self.asked = self.asked, {}
            return batch

    def answer(self, which: list[int], values: np.ndarray, grads: np.ndarray) -> None:
        with self.cond:
            for i, b in enumerate(which):
                self.answers[b] = (float(values[i]), grads[i])
            self.rounds += 1
            self.cond.notify_all()


def learn(
    problems: Sequence[Problem],
    bounds: np.ndarray,
    noise: float | None = None,
    on_round: Callable[[int, int], None] | None = None,
    maxiter: int = 15_000,
    memory: int = 30,
) -> np.ndarray:
    """Every problem's hyperparameters (B, p) maximising its marginal likelihood, from its
    start, within `bounds` (p, 2) in log space (scikit-learn's kernel bounds). Each problem
    has its own L-BFGS-B (scipy's, as scikit-learn runs it: same start, bounds and
    tolerances), and their objective calls are evaluated together, one batch per round.
    `memory`: the L-BFGS corrections kept (scipy's default is 10; with 64 length scales, 30
    took 361 rounds where 10 took 524 for 15 warm-started fold problems, to a likelihood
    within 5e-6). `on_round(round, running)` reports progress."""
    if not problems:
        return np.zeros((0, len(bounds)))
    Z, Y, mask, sizes, outputs = _pad(problems)
    B, p = len(problems), len(bounds)
    lengths = p - 1 - (noise is None)

    lock = _Lockstep(B)
    out = np.clip(np.stack([pr.theta for pr in problems]), bounds[:, 0], bounds[:, 1])

    def run(b: int) -> None:
        try:
            result = minimize(
                lambda x: lock.ask(b, x),
                out[b],
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": maxiter, "maxcor": memory},
            )
            out[b] = result.x
        except BaseException as e:
            lock.fail(e)
        finally:
            lock.finish(b)

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in range(B)]
    for t in threads:
        t.start()
    try:
        while (batch := lock.next_batch()) is not None:
            which = sorted(batch)
            idx = torch.tensor(which)
            th = torch.tensor(np.stack([batch[b] for b in which]), dtype=torch.float64)
            values, grad = _nll(
                th, Z[idx], Y[idx], mask[idx], sizes[idx], outputs[idx], lengths, noise
            )
            lock.answer(which, values.numpy(), grad.numpy())
            if on_round is not None:
                on_round(lock.rounds, len(which))
    except BaseException as e:  # every waiting optimiser raises it too
        lock.fail(e)
        raise
    finally:
        for t in threads:
            t.join()
    if lock.error is not None:
        raise lock.error
    return out
