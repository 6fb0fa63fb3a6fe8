"""Scoring items: bits per byte of the gold answer, and multiple-choice accuracy by likelihood.

Metric names (the columns of runs.parquet, the surrogates' targets; one scheme everywhere):

    suite:<suite>:bpb        bits per UTF-8 byte of the gold continuation given the context
    suite:<suite>:acc        accuracy, the choice with the highest log-likelihood
    suite:<suite>:acc_norm   accuracy, log-likelihood per byte of the choice
    ability:<ability>:bpb    weighted mean of its suites' bpb (lower is better)
    ability:<ability>:acc    weighted mean of its multiple-choice suites' acc
    domain:<domain>:bpb      held-out bits per byte of a training domain

`score_tasks` takes any log-likelihood function, so a model, a pack of models or a random
scorer all go through the same arithmetic. `PackScorer` is the one for proxies: every request
is scored by all P proxies of a pack in one batched forward pass.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tokenizers import Tokenizer

from automixer.data.tokenizer import EOS
from automixer.evals.tasks import Task

if TYPE_CHECKING:
    from automixer.config import Config
    from automixer.data.bundle import DataBundle

Request = tuple[str, str]
LogLik = Callable[[Sequence[Request]], tuple[np.ndarray, np.ndarray]]
"""requests -> (summed log-likelihood of each continuation (P, R) in nats, its bytes (R,))."""


def suite_metric(suite: str, measure: str) -> str:
    return f"suite:{suite}:{measure}"


def ability_metric(ability: str, measure: str) -> str:
    return f"ability:{ability}:{measure}"


def domain_metric(domain: str) -> str:
    return f"domain:{domain}:bpb"


def domain_metrics(bpb: Mapping[str, Any]) -> dict[str, Any]:
    """Per-domain values keyed by their metric names."""
    return {domain_metric(d): v for d, v in bpb.items()}


def items_per_suite(tasks: Sequence[Task]) -> dict[str, int]:
    return dict(Counter(t.suite for t in tasks))


def score_suites(
    model: torch.nn.Module, tokenizer: Tokenizer, tasks: Sequence[Task], config: Config
) -> dict[str, np.ndarray]:
    """Suite and ability metrics of every proxy of a pack: name -> (P,)."""
    if not tasks:
        return {}
    return score_tasks(tasks, suite_scorer(model, tokenizer, config), config.evals.abilities)


def suite_scorer(model: torch.nn.Module, tokenizer: Tokenizer, config: Config) -> PackScorer:
    """The scorer of the suites: positions up to the proxies' training length only (the
    global-attention layers never trained beyond it), the context cut from the left."""
    return PackScorer(model, tokenizer, max_len=config.proxy.seq_len + 1)


def score_domains(model: Any, bundle: DataBundle, config: Config) -> dict[str, np.ndarray]:
    """Held-out bits per byte of every training domain for every proxy of a pack, measured as
    training measures it at the end of a run."""
    from proxies.train import TrainConfig, evaluate_bpb

    bpb = evaluate_bpb(
        model,
        bundle.val_arrays(),
        bundle.token_bytes,
        config.proxy.seq_len,
        TrainConfig.eval_batch,
        config.proxy.eval_tokens,
        next(model.parameters()).device,
    )
    return domain_metrics({d: v.numpy().astype(np.float64) for d, v in bpb.items()})


def score_tasks(
    tasks: Sequence[Task],
    loglik: LogLik,
    abilities: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-suite and per-ability metrics, each an array over the proxies of the scorer."""
    requests: list[Request] = []
    spans = []
    for t in tasks:
        reqs = t.requests()
        spans.append((len(requests), len(reqs)))
        requests.extend(reqs)
    ll, nbytes = loglik(requests)
    P = ll.shape[0]
    by_suite: dict[str, dict[str, list]] = {}
    for t, (start, n) in zip(tasks, spans, strict=True):
        s = by_suite.setdefault(t.suite, {"nats": [], "bytes": [], "acc": [], "acc_norm": []})
        g = start + t.gold_index()
        s["nats"].append(-ll[:, g])
        s["bytes"].append(nbytes[g])
        if t.is_choice:
            block = ll[:, start : start + n]
            per_byte = block / np.maximum(nbytes[start : start + n], 1)
            s["acc"].append(block.argmax(1) == t.gold_index())
            s["acc_norm"].append(per_byte.argmax(1) == t.gold_index())
    out: dict[str, np.ndarray] = {}
    for suite, s in by_suite.items():
        nats = np.stack(s["nats"], 1).sum(1)
        out[suite_metric(suite, "bpb")] = nats / math.log(2) / max(1, float(np.sum(s["bytes"])))
        if s["acc"]:
            out[suite_metric(suite, "acc")] = np.stack(s["acc"], 1).mean(1)
            out[suite_metric(suite, "acc_norm")] = np.stack(s["acc_norm"], 1).mean(1)
    suite_ability = {t.suite: t.ability for t in tasks}
    weights = abilities or _equal_abilities(suite_ability)
    for ability, ws in weights.items():
        for measure in ("bpb", "acc"):
            parts = [
                (w, out[suite_metric(s, measure)])
                for s, w in ws.items()
                if suite_metric(s, measure) in out
            ]
            if parts:
                total = sum(w for w, _ in parts)
                out[ability_metric(ability, measure)] = (
                    np.sum([w * v for w, v in parts], axis=0) / total
                )
    assert all(v.shape == (P,) for v in out.values())
    return out


def _equal_abilities(suite_ability: Mapping[str, str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for suite, ability in suite_ability.items():
        out.setdefault(ability, {})[suite] = 1.0
    return out


def random_loglik(P: int, seed: int = 0) -> LogLik:
    """A scorer that assigns random log-likelihoods (for checking chance accuracy)."""
    rng = np.random.default_rng(seed)

    def fn(requests: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
        nbytes = np.array([len(c.encode("utf-8")) for _, c in requests], dtype=np.float64)
        return -rng.uniform(1, 10, (P, len(requests))) * np.maximum(nbytes, 1), nbytes

    return fn


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's convention: whitespace that ends the context belongs to the continuation
    (so "...:\n" + "   return" is scored as "...:" + "\n   return")."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


class PackScorer:
    """Log-likelihoods of requests under every proxy of a packed model.

    As lm-eval does it, each request's context and continuation are encoded together and split
    where the context's own encoding ends, so the model sees the token boundaries that occur in
    training text (not a context cut at its last character). A request is [EOS] + context +
    continuation, at most `max_len` tokens (the proxies' training length + 1): the context is
    cut from the left, the continuation from the right if it alone is too long, so no token is
    scored at a position the proxies never trained on. Requests are sorted by length and
    batched. The bytes returned are those of the continuation tokens actually scored.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        *,
        max_len: int = 257,
        batch_size: int = 16,
        device: torch.device | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.batch_size = batch_size
        self.device = device or next(model.parameters()).device
        eos = tokenizer.token_to_id(EOS)
        assert eos is not None
        self.eos = eos

    def _encode(self, requests: Sequence[Request]) -> tuple[list[list[int]], list[int], np.ndarray]:
        pairs = [split_pair(c, k) for c, k in requests]
        whole = self.tokenizer.encode_batch_fast(
            [c + k for c, k in pairs], add_special_tokens=False
        )
        ctx = self.tokenizer.encode_batch_fast([c for c, _ in pairs], add_special_tokens=False)
        seqs, starts, nbytes = [], [], []
        for w, c in zip(whole, ctx, strict=True):
            n_ctx = len(c.ids)
            cont_ids = w.ids[n_ctx:][: self.max_len - 1] or [self.eos]
            room = self.max_len - 1 - len(cont_ids)
            ctx_ids = w.ids[:n_ctx][-room:] if room > 0 and n_ctx else []
            seq = [self.eos, *ctx_ids, *cont_ids]
            seqs.append(seq)
            starts.append(1 + len(ctx_ids))
            nbytes.append(len(self.tokenizer.decode(cont_ids).encode("utf-8")))
        return seqs, starts, np.asarray(nbytes, dtype=np.float64)

    @torch.no_grad()
    def __call__(self, requests: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
        seqs, starts, nbytes = self._encode(requests)
        P = int(getattr(self.model, "P", 1))
        out = np.zeros((P, len(seqs)))
        order = np.argsort([len(s) for s in seqs], kind="stable")
        was_training = self.model.training
        self.model.eval()
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            T = max(len(seqs[j]) for j in idx)
            ids = torch.zeros(len(idx), T, dtype=torch.long)
            mask = torch.zeros(len(idx), T - 1)
            for row, j in enumerate(idx):
                s = seqs[j]
                ids[row, : len(s)] = torch.tensor(s)
                mask[row, starts[j] - 1 : len(s) - 1] = 1.0
            ids = ids.to(self.device)
            logits, _ = self.model(ids[:, :-1].unsqueeze(0).expand(P, -1, -1))
            logp = torch.log_softmax(logits.float(), -1)
            tok = logp.gather(-1, ids[:, 1:].unsqueeze(0).expand(P, -1, -1).unsqueeze(-1))
            total = (tok.squeeze(-1) * mask.to(self.device)).sum(-1)
            out[:, idx] = total.double().cpu().numpy()
        self.model.train(was_training)
        return out, nbytes
