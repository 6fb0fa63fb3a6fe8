from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from automixer.errors import AutomixerError
from automixer.evals.scoring import PackScorer, random_loglik, score_tasks, suite_scorer
from automixer.evals.suites import SUITES, config_tasks, load_suite, suite_table
from automixer.evals.tasks import Task, load_jsonl, write_jsonl
from proxies.model import PackedLM
from proxies.presets import get_preset


def test_builtin_suites_are_real_items():
    assert {s["ability"] for s in suite_table()} == {"code", "math", "stem", "commonsense"}
    for name in SUITES:
        items = load_suite(name, n=5, seed=1)
        assert len(items) == 5 and all(t.suite == name for t in items)
        assert all(t.gold_text().strip() for t in items)
    he = {t.id: t for t in load_suite("humaneval")}
    assert len(he) == 164 and "def has_close_elements" in he["humaneval/0"].context
    gsm = load_suite("gsm8k", n=3)
    assert all(t.context.startswith("Question:") for t in gsm)
    assert load_suite("arc_easy", n=10, seed=0) == load_suite("arc_easy", n=10, seed=0)
    assert load_suite("arc_easy", n=10, seed=0) != load_suite("arc_easy", n=10, seed=1)


def test_random_scorer_is_at_chance():
    for name in ("arc_easy", "hellaswag", "piqa", "winogrande", "csqa"):
        tasks = load_suite(name, n=400, seed=0)
        chance = np.mean([1 / len(t.choices or ()) for t in tasks])
        m = score_tasks(tasks, random_loglik(P=3, seed=1))
        acc = m[f"suite:{name}:acc"]
        assert acc.shape == (3,)
        assert np.all(np.abs(acc - chance) < 0.08), (name, acc, chance)


def test_metric_names_and_abilities():
    tasks = load_suite("arc_easy", n=20) + load_suite("gsm8k", n=5) + load_suite("piqa", n=10)
    m = score_tasks(tasks, random_loglik(P=2))
    assert {
        "suite:arc_easy:bpb",
        "suite:arc_easy:acc",
        "suite:arc_easy:acc_norm",
        "suite:gsm8k:bpb",
        "ability:stem:bpb",
        "ability:math:bpb",
        "ability:stem:acc",
        "ability:commonsense:bpb",
    } <= set(m)
    assert "suite:gsm8k:acc" not in m


def test_pack_scorer_is_deterministic_and_per_proxy(bundle_and_config):
    bundle, _ = bundle_and_config
    cfg = get_preset("tiny", vocab_size=bundle.tokenizer.get_vocab_size())
    model = PackedLM(cfg, [0, 1])
    scorer = PackScorer(model, bundle.tokenizer, max_len=64, batch_size=8)
    tasks = load_suite("arc_easy", n=12) + load_suite("humaneval", n=3)
    a = score_tasks(tasks, scorer)
    b = score_tasks(tasks, scorer)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    alone = PackedLM(cfg, [1])
    c = score_tasks(tasks, PackScorer(alone, bundle.tokenizer, max_len=64, batch_size=8))
    for k in c:
        np.testing.assert_allclose(a[k][1], c[k][0], rtol=1e-4)
    assert np.all(a["suite:arc_easy:bpb"] > 0)
    with torch.no_grad():  # an untrained model is near uniform over the vocabulary
        v = bundle.tokenizer.get_vocab_size()
        assert a["suite:humaneval:bpb"][0] < 2 * np.log2(v)


@pytest.mark.parametrize(
    "row, needle",
    [
        ("{not json", "malformed task line"),
        (
            '{"id": "a", "context": "c", "suite": "s", "ability": "stem", "choices": ["x", "y"], '
            '"gold": 2}',
            "gold index 2 is out of range",
        ),
        (
            '{"id": "a", "context": "c", "suite": "s", "ability": "stem", "choices": []}',
            "no choices",
        ),
        (
            '{"id": "a", "context": "c", "suite": "nosuch", "ability": "stem", '
            '"continuation": " x"}',
            "unknown suite 'nosuch'",
        ),
        ('{"id": "a", "context": "c", "suite": "s", "ability": "stem"}', "needs 'choices'"),
    ],
)
def test_bad_task_lines_name_file_and_line(tmp_path: Path, row: str, needle: str):
    good = {"id": "g", "context": "c", "suite": "s", "ability": "stem", "continuation": " x"}
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(good) + "\n" + row + "\n")
    known = ["s"] if "nosuch" in row else None
    with pytest.raises(AutomixerError) as info:
        load_jsonl(path, known_suites=known)
    assert needle in info.value.message and info.value.line == 2
    assert info.value.file and info.value.file.endswith("tasks.jsonl")


def test_jsonl_round_trip(tmp_path: Path):
    tasks = load_suite("winogrande", n=5) + load_suite("mbpp", n=2)
    write_jsonl(tasks, tmp_path / "t.jsonl")
    assert load_jsonl(tmp_path / "t.jsonl") == tasks
    assert any(t.choice_contexts for t in tasks if t.suite == "winogrande")


def test_config_tasks_subsample(tmp_path: Path):
    from automixer.config import Config
    from tests.conftest import small_config

    cfg = Config.model_validate(
        small_config(
            tmp_path,
            evals={"suites": ["sciq", "gsm8k"], "n_per_suite": 7},
            solve={"objective": {"stem": 1, "math": 1}},
        )
    )
    tasks = config_tasks(cfg)
    assert len(tasks) == 14 and {t.suite for t in tasks} == {"sciq", "gsm8k"}
    assert isinstance(tasks[0], Task)
    # Items the data stage found in training are left out before the draw; the size holds.
    from automixer.evals.suites import item_key

    found = {item_key(t) for t in tasks[:3]}
    kept = config_tasks(cfg, exclude=found)
    assert len(kept) == 14 and not found & {item_key(t) for t in kept}
    assert config_tasks(cfg, exclude={"nothing:0"}) == tasks


@pytest.mark.slow
def test_code_proxy_knows_code_prose_proxy_knows_commonsense(tmp_path: Path):
    """Real signal: same budget, one proxy on code only, one on English prose only."""
    from automixer.config import Config
    from automixer.data.pipeline import prepare_data
    from proxies.train import TrainConfig, train_pack
    from tests.conftest import small_config

    cfg = small_config(
        tmp_path,
        domains=[
            {"name": "code", "builtin": "code", "max_bytes": 1_500_000},
            {"name": "prose", "builtin": "bible", "max_bytes": 1_500_000},
        ],
    )
    cfg["tokenizer"] = {"vocab_size": 1024, "sample_bytes_per_domain": 400_000}
    config = Config.model_validate(cfg)
    bundle = prepare_data(config, progress=False)
    tokens = 150 * 16 * 64
    from automixer.data.loader import MixtureLoader

    loaders = [
        MixtureLoader(bundle.train_arrays(), w, tokens, 64, 16, seed=0, max_epochs=8)
        for w in ({"code": 1.0}, {"prose": 1.0})
    ]
    tasks = (
        load_suite("humaneval", n=60)
        + load_suite("mbpp", n=60)
        + load_suite("hellaswag", n=80)
        + load_suite("piqa", n=80)
        + load_suite("winogrande", n=80)
    )
    model_cfg = get_preset("tiny", vocab_size=bundle.tokenizer.get_vocab_size())
    res = train_pack(
        model_cfg,
        loaders,
        [0, 0],
        TrainConfig(log_every=50),
        evaluate=lambda m: score_tasks(tasks, PackScorer(m, bundle.tokenizer, max_len=128)),
    )
    code, prose = res[0].metrics, res[1].metrics
    assert code["ability:code:bpb"] < prose["ability:code:bpb"]
    assert prose["ability:commonsense:bpb"] < code["ability:commonsense:bpb"]


def test_hf_task_loader_on_a_local_dataset(tmp_path: Path):
    import datasets

    from automixer.evals.tasks import load_hf_tasks

    datasets.Dataset.from_dict(
        {
            "question": ["Which is a mammal?", "What is 2 + 2?"],
            "options": [["trout", "whale"], ["3", "4"]],
            "label": [1, 1],
        }
    ).save_to_disk(str(tmp_path / "qa"))
    tasks = load_hf_tasks(
        str(tmp_path / "qa"),
        split="train",
        suite="toy",
        ability="stem",
        context="question",
        choices="options",
        gold="label",
    )
    assert [t.gold_text() for t in tasks] == [" whale", " 4"]
    m = score_tasks(tasks, random_loglik(P=1))
    assert "suite:toy:acc" in m


def test_parsed_suites_are_cached_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from automixer.evals import suites

    monkeypatch.setenv("AUTOMIXER_SUITE_CACHE", str(tmp_path))
    for name in ("winogrande", "gsm8k", "arc_easy"):
        suites._all_items.cache_clear()
        built = suites._all_items(name)  # parsed from the package, then written
        assert suites._cache_file(name).is_file()
        suites._all_items.cache_clear()
        assert suites._all_items(name) == built  # read back: the same items, tuples and all
    suites._cache_file("gsm8k").write_text("{not json")
    suites._all_items.cache_clear()
    assert suites._all_items("gsm8k") == tuple(suites.SUITES["gsm8k"].load())
    suites._all_items.cache_clear()


def test_context_and_continuation_are_encoded_together(bundle_and_config):
    """As lm-eval does: the pair is encoded as one text and split where the context's encoding
    ends; the context's trailing newline goes with the continuation, so HumanEval's indented
    answers start with the newline-and-indent token that training text has."""
    bundle, _ = bundle_and_config
    tok = bundle.tokenizer
    cfg = get_preset("tiny", vocab_size=tok.get_vocab_size())
    scorer = PackScorer(PackedLM(cfg, [0]), tok, max_len=4096)
    items = load_suite("humaneval", n=20, seed=0)
    seqs, starts, nbytes = scorer._encode([(t.context, t.gold_text()) for t in items])
    for t, seq, start, nb in zip(items, seqs, starts, nbytes, strict=True):
        whole = tok.encode(t.context + t.gold_text(), add_special_tokens=False).ids
        assert seq[1:] == whole  # no boundary that the text itself does not have
        assert tok.decode(seq[start:]).startswith("\n") == t.context.endswith("\n")
        assert nb == len(tok.decode(seq[start:]).encode("utf-8"))


def test_no_token_is_scored_beyond_the_training_length(bundle_and_config):
    bundle, config = bundle_and_config
    tok = bundle.tokenizer
    cfg = get_preset("tiny", vocab_size=tok.get_vocab_size())
    scorer = suite_scorer(PackedLM(cfg, [0]), tok, config)
    assert scorer.max_len == config.proxy.seq_len + 1  # inputs of at most seq_len tokens
    long = [(t.context, t.gold_text()) for t in load_suite("humaneval", n=10, seed=0)]
    seqs, starts, _ = scorer._encode(long)
    assert max(len(s) for s in seqs) <= config.proxy.seq_len + 1
    assert all(start >= 1 for start in starts)


def test_domain_bits_per_byte_divide_by_the_bytes_scored(bundle_and_config):
    """A model that predicts every token with probability 1/V: its nats are known exactly, so
    bits per byte must equal scored tokens * log2(V) / the bytes of those very tokens."""
    from automixer.data.tokenizer import token_byte_lengths
    from proxies.train import evaluate_bpb

    bundle, _ = bundle_and_config
    tok = bundle.tokenizer
    V = tok.get_vocab_size()

    class Uniform(torch.nn.Module):
        P = 1

        def losses(self, windows):
            return torch.full((1,), float(np.log(V))), torch.zeros(1), torch.zeros(0, 1, 0)

    token_bytes = token_byte_lengths(tok)
    text = "def spam(eggs):\n    return eggs * 2  # état, ça, 例\n"
    ids = tok.encode(text, add_special_tokens=False).ids
    assert token_bytes[ids].sum() == len(text.encode("utf-8"))  # exact for byte-level BPE
    val = bundle.val_arrays()["bible"]
    seq_len, n = 32, 3
    bpb = evaluate_bpb(Uniform(), {"bible": val}, token_bytes, seq_len, 2, n * seq_len, "cpu")
    targets = np.concatenate([val[i * seq_len + 1 : (i + 1) * seq_len + 1] for i in range(n)])
    expected = n * seq_len * np.log2(V) / token_bytes[targets].sum()
    assert float(bpb["bible"][0]) == pytest.approx(expected, rel=1e-6)
