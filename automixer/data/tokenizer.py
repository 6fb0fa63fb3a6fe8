"""The shared tokenizer: a byte-level BPE trained with Hugging Face `tokenizers`, or a given file.

Trained on a domain-balanced sample (the same number of bytes from each domain's training
split), so that no domain's text dominates the merges. Cached by the hash of its inputs; its
identity downstream is the hash of its `tokenizer.json`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from automixer.config import Config, TokenizerSection
from automixer.data.splits import SplitDocs
from automixer.errors import ConfigError
from automixer.io import atomic_path, atomic_write_json, hash_json

EOS = "<|endoftext|>"


def balanced_sample(
    train_docs: Mapping[str, Sequence[str]], bytes_per_domain: int, seed: int
) -> dict[str, list[str]]:
    """Up to `bytes_per_domain` bytes of whole documents from each domain, in a seeded order."""
    out: dict[str, list[str]] = {}
    for name, docs in train_docs.items():
        order = list(range(len(docs)))
        random.Random(f"{seed}:{name}").shuffle(order)
        picked: list[str] = []
        size = 0
        for i in order:
            if size >= bytes_per_domain:
                break
            doc = docs[i]
            room = bytes_per_domain - size
            b = doc.encode("utf-8")
            if len(b) > room:
                doc = b[:room].decode("utf-8", "ignore")
            picked.append(doc)
            size += min(len(b), room)
        out[name] = picked
    return out


def train_bpe(
    texts: Iterator[str] | Sequence[str], vocab_size: int, min_frequency: int = 2
) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_tokenizer(path: str | Path, field: str = "tokenizer.path") -> Tokenizer:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"tokenizer file not found: {p}", field=field)
    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a plain Exception for bad files
        raise ConfigError(f"not a tokenizer.json: {e}", file=p, field=field) from None
    if tok.token_to_id(EOS) is None:
        raise ConfigError(
            f"the tokenizer has no '{EOS}' token, which separates documents", file=p, field=field
        )
    return tok


def load_target_tokenizer(spec: str) -> Tokenizer:
    """The full run's tokenizer: a tokenizer.json, a folder holding one, or the name of a
    Hugging Face tokenizer (read from the local cache; nothing is downloaded offline)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise ConfigError(f"tokenizer file not found: {p}", field="tokenizer.target")
        try:
            return Tokenizer.from_file(str(p))
        except Exception as e:  # tokenizers raises a plain Exception for bad files
            raise ConfigError(
                f"not a tokenizer.json: {e}", file=p, field="tokenizer.target"
            ) from None
    try:
        return Tokenizer.from_pretrained(spec)
    except Exception as e:  # no network, no such repository, no tokenizer.json in it
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ConfigError(
            f"cannot load the tokenizer '{spec}' ({first}); give a tokenizer.json path",
            field="tokenizer.target",
        ) from None


def bytes_per_token(
    tokenizer: Tokenizer, texts: Sequence[str], max_bytes: int = 1_000_000
) -> float:
    """UTF-8 bytes per token of `tokenizer` over the first texts, up to about `max_bytes`."""
    sample: list[str] = []
    size = 0
    for t in texts:
        if size >= max_bytes:
            break
        sample.append(t)
        size += len(t.encode("utf-8"))
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(sample, add_special_tokens=False))
    return size / max(1, tokens)


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """The UTF-8 bytes each token id stands for (0 for special tokens), so that bits per byte
    divide by the bytes actually scored. Exact for byte-level BPE (one symbol per byte); for
    other tokenizers, the bytes of each token decoded on its own."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    out = np.zeros(tokenizer.get_vocab_size(with_added_tokens=True), dtype=np.float64)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    byte_level = json.loads(tokenizer.to_str()).get("decoder", {}) or {}
    byte_level_decoder = byte_level.get("type") == "ByteLevel"
    for token, i in vocab.items():
        if token in special or i >= len(out):
            continue
        out[i] = len(token) if byte_level_decoder else len(tokenizer.decode([i]).encode("utf-8"))
    return out


def get_tokenizer(
    cfg: TokenizerSection, train_docs: Mapping[str, Sequence[str]], cache_dir: Path, seed: int
) -> tuple[Tokenizer, Path, str]:
    """The tokenizer for a config: (tokenizer, its tokenizer.json, its content hash)."""
    if cfg.path is not None:
        tok = load_tokenizer(cfg.path)
        return tok, Path(cfg.path), file_hash(Path(cfg.path))
    sample = balanced_sample(train_docs, cfg.sample_bytes_per_domain, seed)
    digest = hashlib.sha256()
    for name in sorted(sample):
        digest.update(name.encode())
        for doc in sample[name]:
            digest.update(hashlib.sha256(doc.encode("utf-8")).digest())
    import tokenizers

    key = hash_json(
        {
            "sample": digest.hexdigest(),
            "vocab": cfg.vocab_size,
            "min_frequency": cfg.min_frequency,
            "tokenizers": tokenizers.__version__,
        }
    )
    path = cache_dir / "tokenizers" / key / "tokenizer.json"
    if not path.is_file():
        texts = [doc for name in sorted(sample) for doc in sample[name]]
        tok = train_bpe(texts, cfg.vocab_size, cfg.min_frequency)
        with atomic_path(path) as tmp:
            tok.save(str(tmp))
    tok = Tokenizer.from_file(str(path))
    return tok, path, file_hash(path)


def target_bytes_per_token(
    config: Config, splits: Mapping[str, SplitDocs], keys: Mapping[str, str], cache: Path
) -> dict[str, float]:
    """Bytes per token of the full run's tokenizer on each domain's training text (cached)."""
    spec = config.tokenizer.target
    if spec is None:
        return {}
    tok = load_target_tokenizer(spec)
    tok_key = hash_json(tok.to_str())
    out: dict[str, float] = {}
    for d, s in splits.items():
        path = cache / "target_bpt" / f"{d}-{keys[d]}-{tok_key}.json"
        if path.is_file():
            out[d] = float(json.loads(path.read_text())["bytes_per_token"])
            continue
        out[d] = bytes_per_token(tok, s.train)
        atomic_write_json(path, {"bytes_per_token": out[d], "tokenizer": spec})
    return out
