"""Typed, frozen configuration for every part of the toolkit.

One YAML file holds five sections (``tokenizer``, ``data``, ``model``, ``training``, ``generation``)
plus ``task``. Every field has a default and a comment; checks live in ``__post_init__`` and name the
field, the bad value and what is allowed, in the dotted words that ``--set`` uses
(``model.hidden_size``). Unknown keys are an error, never silently ignored.

    cfg = load_config("configs/tiny.yaml", overrides=["training.max_steps=50"])
    save_config(cfg, "runs/x/config.yaml")
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from .errors import ConfigError
from .files import atomic_write_text

TASKS = ("translation", "lm")
TASK_NAMES = {"translation": "translation model", "lm": "language model"}  # for messages
SP_MODEL_TYPES = ("unigram", "bpe")
DATA_FORMATS = ("auto", "text", "tsv", "jsonl", "parquet")
CELLS = ("lstm", "peephole", "cifg")
ATTENTIONS = ("dot", "general", "bahdanau")
BRIDGES = ("linear", "zero")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_decay", "plateau")
LENGTH_PENALTIES = ("none", "gnmt", "average")
# GNMT exponent: Wu et al. (2016) use 0.6-1; up to 10, ((5 + |Y|) / 6) ** alpha stays a finite float for
# every |Y| <= search.MAX_LEN (a larger alpha overflows on long hypotheses and only ever favours the longest)
ALPHA_MAX = 10.0
DTYPES = ("float32", "bfloat16", "int8")  # weight types at inference (seq2seq_lstm.decoding.quantize)
SEED_MAX = 2**32 - 1  # numpy's (and so Lightning's seed_everything's) largest seed


def _check_choice(section: str, name: str, value: Any, choices: tuple) -> None:
    """``section`` "" names a top-level key (``task``), as ``--set`` spells it."""
    if value not in choices:
        key = f"{section}.{name}" if section else name
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _check_range(
    section: str,
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    # NaN passes every comparison, and no setting here means anything at infinity: both are refused
    # here, or torch and Lightning find them after the run directory is made (with a traceback)
    finite = not isinstance(value, float) or math.isfinite(value)
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi)
    )
    if bad or not finite:
        lo_s = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
        hi_s = "" if hi is None else (f"< {hi}" if hi_open else f"<= {hi}")
        allowed = " and ".join(s for s in (lo_s, hi_s) if s)
        allowed = allowed if finite else f"a finite number {allowed}".rstrip()
        raise ConfigError(f"{section}.{name} must be {allowed}; got {value!r}")


def _check_limit(section: str, name: str, value: int) -> None:
    """A step or epoch count where -1 means no limit (0 would stop before the first step)."""
    if value != -1 and value < 1:
        raise ConfigError(f"{section}.{name} must be -1 (no limit) or >= 1; got {value!r}")


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece settings; special ids are fixed: pad=0, unk=1, bos=2, eos=3."""

    model_type: str = "unigram"  # unigram or bpe
    vocab_size: int = 8000  # pieces per model (joint: shared by both languages)
    character_coverage: float = 1.0  # share of characters covered by pieces; the rest go through bytes
    byte_fallback: bool = True  # unseen characters become byte pieces, so no input is unrepresentable
    joint: bool = True  # one model for source and target (needed to tie all three embeddings)
    input_sentence_size: int = 2_000_000  # sentences sampled for training the model (0 = all)
    seed: int = 1234  # SentencePiece's sampling seed, for reproducible models
    # SentencePiece splits its counts over this many threads and sums them in that order, so the
    # number is part of the result: fixed here (SentencePiece's own default), not the machine's cores,
    # so that one config trains the same tokenizer on a laptop and on a 16-core GPU server
    num_threads: int = 16
    # train on a seeded reservoir sample of this many sentences (pairs) of the training split, read as
    # a stream so the corpus is never held in memory (0 = all of it; a streaming corpus is still
    # streamed, and SentencePiece keeps input_sentence_size of them)
    sample_sentences: int = 0

    def __post_init__(self) -> None:
        _check_choice("tokenizer", "model_type", self.model_type, SP_MODEL_TYPES)
        _check_range("tokenizer", "vocab_size", self.vocab_size, lo=8)
        _check_range("tokenizer", "character_coverage", self.character_coverage, lo=0.9, hi=1.0)
        _check_range("tokenizer", "input_sentence_size", self.input_sentence_size, lo=0)
        _check_range("tokenizer", "num_threads", self.num_threads, lo=1)
        _check_range("tokenizer", "seed", self.seed, lo=0, hi=SEED_MAX)
        _check_range("tokenizer", "sample_sentences", self.sample_sentences, lo=0)


@dataclass(frozen=True)
class DataConfig:
    """Where the corpora are and how batches are built.

    A split is a path: a prefix ``data/ding/train`` (text format: ``train.en`` and ``train.de``), a
    ``.tsv``, ``.jsonl`` or ``.parquet`` file, or ``embedded:NAME/SPLIT`` for a corpus shipped inside
    the package (``embedded:bible-en-es/train``). For ``task: lm`` a split is one text file, one
    sentence per line.
    """

    train: str = ""  # training split (required for training)
    valid: str = ""  # validation split (loss, BLEU, early stopping); empty = no validation
    test: str = ""  # test split, used by benchmarks and `s2s evaluate`
    format: str = "auto"  # auto (from the path), text, tsv, jsonl or parquet
    src_lang: str = "en"  # source language code (file suffix, TSV column, JSON key)
    tgt_lang: str = "de"  # target language code
    encoding_errors: str = "strict"  # strict: invalid UTF-8 is an error; replace: U+FFFD
    min_len: int = 1  # drop pairs with fewer pieces on either side
    max_len: int = 100  # drop pairs with more pieces on either side (bounds memory)
    max_ratio: float = 3.0  # drop pairs whose longer side has more than this times the pieces of the other
    batch_tokens: int = 4096  # token budget per batch: max(len) * sentences, padding included
    max_sentences: int = 0  # cap on sentences per batch (0 = only the token budget)
    bucket_width: int = 1  # length bucket width in pieces; 1 = sort exactly, larger = more shuffling
    num_proc: int = 1  # worker processes for tokenization (datasets.map)
    max_valid_sentences: int = 500  # sentences decoded for validation BLEU (0 = all)
    seed: int = 1234  # batch shuffling seed (and subword sampling's)
    # subword regularization (Kudo 2018): training pairs get a new SentencePiece segmentation sampled in
    # every epoch with this smoothing alpha (unigram; BPE: merge dropout rate); 0 = off, deterministic
    sample_alpha: float = 0.0
    # Streaming (training split only; validation and test stay in memory): the corpus is read as it
    # is consumed, so memory does not grow with its size
    streaming: bool = False  # read data.train as a stream instead of loading it (Arrow cache) first
    shuffle_buffer: int = 10_000  # pairs in the bounded shuffle buffer of each stream
    # pairs per batching window, sorted by length and cut into token-budget batches: this many pad about
    # as little as sorting the whole corpus (a few thousand leave ~6% more padded positions); each stream
    # holds one window (~2 KB a pair) and tokenizes it before handing out its first batch
    window: int = 50_000
    num_workers: int = 0  # DataLoader processes that read and tokenize the stream (0 = the trainer's own)
    worker_timeout: float = 600.0  # seconds to wait for a batch from a worker before giving up (0 = forever)
    skip_bad_lines: bool = False  # skip and count malformed lines instead of stopping at the first

    def __post_init__(self) -> None:
        _check_choice("data", "format", self.format, DATA_FORMATS)
        _check_choice("data", "encoding_errors", self.encoding_errors, ("strict", "replace"))
        _check_range("data", "min_len", self.min_len, lo=0)
        _check_range("data", "max_len", self.max_len, lo=1)
        if self.min_len > self.max_len:
            raise ConfigError(f"data.min_len ({self.min_len}) must be <= data.max_len ({self.max_len})")
        _check_range("data", "max_ratio", self.max_ratio, lo=1.0)
        _check_range("data", "batch_tokens", self.batch_tokens, lo=1)
        if self.batch_tokens < self.max_len + 1:
            raise ConfigError(
                f"data.batch_tokens ({self.batch_tokens}) must be > data.max_len ({self.max_len}), "
                "or the longest sentence fits in no batch"
            )
        _check_range("data", "max_sentences", self.max_sentences, lo=0)
        _check_range("data", "bucket_width", self.bucket_width, lo=1)
        _check_range("data", "num_proc", self.num_proc, lo=1)
        _check_range("data", "max_valid_sentences", self.max_valid_sentences, lo=0)
        _check_range("data", "seed", self.seed, lo=0, hi=SEED_MAX)
        _check_range("data", "sample_alpha", self.sample_alpha, lo=0.0)
        if self.sample_alpha > 0 and self.streaming:
            raise ConfigError(
                "data.sample_alpha needs the in-memory training split: a streamed one (data.streaming) "
                "is not sampled yet; set data.streaming=false or data.sample_alpha=0"
            )
        _check_range("data", "shuffle_buffer", self.shuffle_buffer, lo=1)
        _check_range("data", "window", self.window, lo=1)
        _check_range("data", "num_workers", self.num_workers, lo=0)
        _check_range("data", "worker_timeout", self.worker_timeout, lo=0.0)


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder architecture (Luong et al. 2015; Bahdanau et al. 2015)."""

    emb_dim: int = 256  # embedding size (source and target)
    hidden_size: int = 512  # LSTM hidden size per layer (per direction: half of it when bidirectional)
    enc_layers: int = 2  # stacked encoder LSTM layers
    dec_layers: int = 2  # stacked decoder LSTM layers
    bidirectional: bool = False  # bidirectional encoder (each direction gets hidden_size // 2)
    dropout: float = 0.3  # dropout on embeddings, between LSTM layers and before the output layer
    word_dropout: float = 0.0  # training: drop whole input tokens (source and decoder inputs) at this rate
    cell: str = "lstm"  # lstm (fused nn.LSTM), peephole (Gers & Schmidhuber 2000) or cifg (Greff 2017)
    attention: str = "general"  # dot, general (Luong) or bahdanau (MLP)
    input_feeding: bool = True  # feed the previous attentional vector into the decoder (Luong 2015)
    bridge: str = "linear"  # how the encoder's final state initializes the decoder: linear or zero
    tie_output: bool = True  # decoder output projection shares the target embedding
    tie_source: bool = False  # source embedding shares the target one (needs a joint tokenizer)

    def __post_init__(self) -> None:
        for name in ("emb_dim", "hidden_size", "enc_layers", "dec_layers"):
            _check_range("model", name, getattr(self, name), lo=1)
        _check_range("model", "dropout", self.dropout, lo=0.0, hi=0.9)
        _check_range("model", "word_dropout", self.word_dropout, lo=0.0, hi=0.9)
        _check_choice("model", "cell", self.cell, CELLS)
        _check_choice("model", "attention", self.attention, ATTENTIONS)
        _check_choice("model", "bridge", self.bridge, BRIDGES)
        if self.bidirectional and self.hidden_size % 2:
            raise ConfigError(
                f"model.hidden_size must be even with model.bidirectional; got {self.hidden_size}"
            )


@dataclass(frozen=True)
class TrainingConfig:
    """Optimization, schedule, stopping and Lightning's trainer options."""

    out_dir: str = "runs/default"  # checkpoint directory: config, tokenizer model(s), checkpoints, logs
    seed: int = 1234  # global seed (weights, dropout, batch order)
    init_from: str = ""  # fine-tune: start from this run's weights and reuse its tokenizer ("" = fresh)
    optimizer: str = "adam"  # adam or adamw
    lr: float = 1e-3  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas
    weight_decay: float = 0.0  # decoupled with adamw, L2 with adam
    label_smoothing: float = 0.1  # cross-entropy label smoothing (padding ignored)
    clip_norm: float = 5.0  # gradient-norm clipping, against exploding LSTM gradients (0 = off)
    schedule: str = "constant"  # constant, warmup_decay (linear warmup, inverse-sqrt decay) or plateau
    warmup_steps: int = 0  # linear warmup steps (warmup_decay)
    plateau_factor: float = 0.5  # lr multiplier when validation BLEU stalls (plateau)
    plateau_patience: int = 2  # validations without improvement before the lr drops (plateau)
    max_steps: int = -1  # optimizer steps (-1 = no limit)
    max_epochs: int = 10  # epochs (-1 = no limit)
    max_time: float = 0.0  # wall-clock limit in minutes (0 = none)
    val_every_steps: int = 0  # validate every N steps (0 = once per epoch)
    patience: int = 0  # early stopping after N validations without better BLEU (0 = off)
    keep_checkpoints: int = 0  # keep the last N validation checkpoints, for `s2s average` (0 = none)
    accumulate: int = 1  # gradient accumulation steps
    accelerator: str = "auto"  # Lightning accelerator: cpu, gpu, auto, ...
    devices: str = "1"  # Lightning devices: 1, 2, auto, "0,1"
    num_nodes: int = 1  # Lightning nodes
    strategy: str = "auto"  # Lightning strategy: auto, ddp, ddp_spawn, ...
    precision: str = "32-true"  # Lightning precision: 32-true, bf16-mixed, 16-mixed
    logger: str = "csv"  # csv, tensorboard or none
    log_every_steps: int = 10  # logging interval
    num_threads: int = 0  # torch intra-op threads on CPU (0 = torch's default)
    progress_bar: bool = True  # Lightning's progress bar (loss, tokens/s, ETA)

    def __post_init__(self) -> None:
        _check_choice("training", "optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("training", "schedule", self.schedule, SCHEDULES)
        _check_choice("training", "logger", self.logger, ("csv", "tensorboard", "none"))
        _check_range("training", "seed", self.seed, lo=0, hi=SEED_MAX)
        _check_range("training", "lr", self.lr, lo=0.0, lo_open=True)
        for beta in self.betas:  # torch's Adam takes each in [0, 1)
            _check_range("training", "betas", beta, lo=0.0, hi=1.0, hi_open=True)
        _check_range("training", "weight_decay", self.weight_decay, lo=0.0)
        _check_range("training", "label_smoothing", self.label_smoothing, lo=0.0, hi=0.5)
        _check_range("training", "clip_norm", self.clip_norm, lo=0.0)
        _check_range("training", "warmup_steps", self.warmup_steps, lo=0)
        _check_range("training", "accumulate", self.accumulate, lo=1)
        _check_range("training", "num_nodes", self.num_nodes, lo=1)
        # a factor of 1 or more would never lower the lr (torch refuses it)
        _check_range(
            "training", "plateau_factor", self.plateau_factor, lo=0.0, hi=1.0, lo_open=True, hi_open=True
        )
        _check_range("training", "plateau_patience", self.plateau_patience, lo=0)
        _check_limit("training", "max_steps", self.max_steps)
        _check_limit("training", "max_epochs", self.max_epochs)
        _check_range("training", "max_time", self.max_time, lo=0.0)
        _check_range("training", "val_every_steps", self.val_every_steps, lo=0)
        _check_range("training", "patience", self.patience, lo=0)
        _check_range("training", "keep_checkpoints", self.keep_checkpoints, lo=0)
        _check_range("training", "log_every_steps", self.log_every_steps, lo=1)
        _check_range("training", "num_threads", self.num_threads, lo=0)
        if self.max_steps == -1 and self.max_epochs == -1 and self.max_time == 0:
            raise ConfigError("training needs a stopping point: set max_steps, max_epochs or max_time")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding defaults for validation BLEU, `s2s translate` and `s2s suggest`."""

    beam_size: int = 5  # beam width (1 = greedy)
    n_best: int = 1  # hypotheses returned per sentence (<= beam_size)
    length_penalty: str = "gnmt"  # none, gnmt (Wu et al. 2016) or average (mean log-prob)
    alpha: float = 0.6  # GNMT length-penalty exponent
    min_len: int = 0  # minimum target pieces before EOS may be chosen
    max_len_a: float = 1.5  # maximum target pieces = a * source pieces + b
    max_len_b: int = 10
    no_repeat_ngram: int = 0  # block repeated n-grams of this size (0 = off)
    ban_unk: bool = False  # never produce the unknown piece
    batch_tokens: int = 4096  # token budget per decoding batch (sorted by length)
    max_input_len: int = 400  # longer inputs are split into chunks of this many pieces
    shortlist: int = 0  # target pieces per sentence from the run's shortlist (`s2s shortlist`); 0 = all
    suggest_k: int = 3  # suggestions shown by `s2s suggest`
    suggest_beam: int = 8  # piece beam used to build whole-word suggestions
    suggest_context: int = 64  # pieces of recent context the suggester reads (bounds work)

    def __post_init__(self) -> None:
        _check_range("generation", "beam_size", self.beam_size, lo=1)
        _check_range("generation", "n_best", self.n_best, lo=1)
        if self.n_best > self.beam_size:
            raise ConfigError(
                f"generation.n_best must be smaller than or equal to generation.beam_size; "
                f"got {self.n_best} > {self.beam_size}"
            )
        _check_choice("generation", "length_penalty", self.length_penalty, LENGTH_PENALTIES)
        _check_range("generation", "alpha", self.alpha, lo=0.0, hi=ALPHA_MAX)
        _check_range("generation", "min_len", self.min_len, lo=0)
        _check_range("generation", "max_len_a", self.max_len_a, lo=0.0)
        _check_range("generation", "max_len_b", self.max_len_b, lo=0)
        _check_range("generation", "no_repeat_ngram", self.no_repeat_ngram, lo=0)
        _check_range("generation", "batch_tokens", self.batch_tokens, lo=1)
        _check_range("generation", "max_input_len", self.max_input_len, lo=1)
        _check_range("generation", "shortlist", self.shortlist, lo=0)
        _check_range("generation", "suggest_k", self.suggest_k, lo=1)
        _check_range("generation", "suggest_beam", self.suggest_beam, lo=1)
        _check_range("generation", "suggest_context", self.suggest_context, lo=1)


@dataclass(frozen=True)
class Config:
    """A whole experiment: what to learn (``task``) and the five sections."""

    task: str = "translation"  # translation (Seq2Seq) or lm (LanguageModel for next-word suggestion)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        _check_choice("", "task", self.task, TASKS)
        if self.tokenizer.model_type == "bpe" and self.data.sample_alpha >= 1:
            raise ConfigError(
                f"data.sample_alpha must be < 1 with tokenizer.model_type bpe (it is the rate at which "
                f"merges are dropped); got {self.data.sample_alpha!r}"
            )
        if self.model.tie_source and not self.tokenizer.joint:
            raise ConfigError("model.tie_source needs tokenizer.joint: true (one vocabulary for both sides)")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections or fields changed: ``cfg.replace(training={"max_steps": 5})``."""
        return config_from_dict(_deep_merge(self.to_dict(), sections))


# --------------------------------------------------------------------------------------------------
# YAML <-> dataclasses, with type checks


def _to_plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return "a list of " + ", ".join(_type_name(a) for a in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
    elif origin is tuple:
        args = get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)  # devices: 2 and devices: "0,1" are both fine
    elif dataclasses.is_dataclass(tp):
        return _section_from_dict(tp, value, where)
    raise ConfigError(f"{where} must be {_type_name(tp)}; got {value!r} ({type(value).__name__})")


def _section_from_dict(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values; got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key {where + '.' if where else ''}{unknown[0]}; allowed keys: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and check a :class:`Config` from plain data (as read from YAML)."""
    return _section_from_dict(Config, data, "")


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: plain YAML loaders
    keep the last one, so a second ``model:`` section silently replaced the whole first one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"{key!r} appears twice (first on line {seen[key] + 1}); keep one",
                    key_node.start_mark,
                )  # fmt: skip
            seen.setdefault(key, key_node.start_mark.line)
        return super().construct_mapping(node, deep)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.hidden_size=256"`` -> ``(["model", "hidden_size"], 256)``; the value is read as YAML."""
    key, eq, raw = text.partition("=")
    keys = [k.strip() for k in key.split(".")]
    if not eq or not all(keys):
        raise ConfigError(
            f"--set {text}: malformed override; write KEY=VALUE with a non-empty dotted key, "
            "e.g. --set model.hidden_size=256"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def _apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``data`` (as read from YAML) with the ``key=value`` overrides set, in order."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if node.get(k) is None:  # absent, or a section left empty in the file (`model:` alone)
                node[k] = {}
            node = node[k]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text}: {k} is not a section")
        node[keys[-1]] = value
    return data


def _culprits(data: dict[str, Any], overrides: list[str] | tuple[str, ...], error: str) -> list[int]:
    """Which overrides a config error comes from: none when the file alone gives the same error, else
    those without which it goes away or changes (and not merely back to the file's own error), or all
    of them when no single one decides. Called only on failure: each try is a small rebuild."""

    def error_without(skip: set[int]) -> str | None:
        try:
            config_from_dict(_apply_overrides(data, [o for i, o in enumerate(overrides) if i not in skip]))
        except ConfigError as e:
            return str(e)
        return None

    alone = error_without(set(range(len(overrides))))
    if alone == error:
        return []
    culprits = []
    for i in range(len(overrides)):
        rest = error_without({i})
        if rest != error and (rest is None or rest != alone):
            culprits.append(i)
    return culprits or list(range(len(overrides)))


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply ``key=value`` overrides.

    An error is blamed on what caused it: the file, or the override(s) (named ``--set KEY=VALUE``, or
    by ``labels[override]`` for one that came from another option, such as ``--max-steps 0``)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass --config with a YAML file")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections; got {type(data).__name__}")
    merged = _apply_overrides(data, overrides)  # a malformed override names itself
    try:
        return config_from_dict(merged)
    except ConfigError as e:
        blamed = [labels.get(t, f"--set {t}") if labels else f"--set {t}" for t in overrides]
        names = [blamed[i] for i in _culprits(data, overrides, str(e))]
        if not names and path is None:
            raise
        raise ConfigError(f"{', '.join(names) if names else path}: {e}") from None


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (temp file, then rename)."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
