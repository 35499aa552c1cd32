"""The config: every check in every section's ``__post_init__``, types, unknown keys, ``--set`` overrides,
YAML quirks, the save/load round trip, immutability and ``Config.replace``.

Errors are compared whole: each must name the dotted key (as ``--set`` spells it), the bad value and
what is allowed, so a person can read the expected line and see that it says what to do.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
import yaml

from seq2seq_lstm.config import (
    SEED_MAX,
    Config,
    DataConfig,
    GenerationConfig,
    ModelConfig,
    TokenizerConfig,
    TrainingConfig,
    config_from_dict,
    load_config,
    parse_override,
    save_config,
)
from seq2seq_lstm.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "tokenizer": TokenizerConfig,
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "generation": GenerationConfig,
}


def nested(**dotted) -> dict:
    """``nested(**{"model.hidden_size": 3})`` -> ``{"model": {"hidden_size": 3}}`` (as read from YAML)."""
    data: dict = {}
    for key, value in dotted.items():
        *sections, name = key.split(".")
        node = data
        for s in sections:
            node = node.setdefault(s, {})
        node[name] = value
    return data


def error_of(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    return str(e.value)


def fields_of_type(tp) -> list[str]:
    """Dotted names of every section field annotated ``tp`` (int, float, str, bool)."""
    return [
        f"{name}.{f}"
        for name, cls in SECTIONS.items()
        for f, hint in typing.get_type_hints(cls).items()
        if hint is tp
    ]


# --------------------------------------------------------------------------------------------------
# Valid values load


def test_defaults_are_a_valid_config_and_loading_nothing_gives_them():
    cfg = load_config(None)
    assert cfg == Config()
    # the documented defaults a person can look up in config.py
    assert (cfg.task, cfg.tokenizer.vocab_size, cfg.model.hidden_size, cfg.training.lr) == (
        "translation", 8000, 512, 1e-3,
    )  # fmt: skip
    assert cfg.training.betas == (0.9, 0.999) and cfg.generation.beam_size == 5


@pytest.mark.parametrize(
    ("override", "attribute", "expected"),
    [
        ("task=lm", "task", "lm"),
        # tokenizer: both algorithms, and the edges of every range
        ("tokenizer.model_type=bpe", "tokenizer.model_type", "bpe"),
        ("tokenizer.vocab_size=8", "tokenizer.vocab_size", 8),
        ("tokenizer.character_coverage=0.9", "tokenizer.character_coverage", 0.9),
        ("tokenizer.character_coverage=1", "tokenizer.character_coverage", 1.0),  # int read as float
        ("tokenizer.input_sentence_size=0", "tokenizer.input_sentence_size", 0),
        ("tokenizer.seed=4294967295", "tokenizer.seed", SEED_MAX),
        ("tokenizer.joint=false", "tokenizer.joint", False),
        # data
        ("data.format=parquet", "data.format", "parquet"),
        ("data.encoding_errors=replace", "data.encoding_errors", "replace"),
        ("data.min_len=0", "data.min_len", 0),
        ("data.min_len=100", "data.min_len", 100),  # equal to max_len is allowed
        ("data.max_ratio=1", "data.max_ratio", 1.0),
        ("data.batch_tokens=101", "data.batch_tokens", 101),  # max_len + 1: the longest sentence fits
        ("data.train=embedded:bible-en-es/train", "data.train", "embedded:bible-en-es/train"),
        ("data.src_lang='no'", "data.src_lang", "no"),  # quoted, Norwegian stays a string
        # model
        ("model.cell=cifg", "model.cell", "cifg"),
        ("model.attention=bahdanau", "model.attention", "bahdanau"),
        ("model.bridge=zero", "model.bridge", "zero"),
        ("model.dropout=0.9", "model.dropout", 0.9),
        ("model.dropout=0", "model.dropout", 0.0),
        ("model.enc_layers=1", "model.enc_layers", 1),
        # training
        ("training.optimizer=adamw", "training.optimizer", "adamw"),
        ("training.schedule=warmup_decay", "training.schedule", "warmup_decay"),
        ("training.logger=none", "training.logger", "none"),
        ("training.lr=1e-3", "training.lr", 0.001),  # YAML 1.1 reads 1e-3 as a string
        ("training.betas=[0.0, 0.5]", "training.betas", (0.0, 0.5)),  # a list becomes a tuple
        ("training.label_smoothing=0.5", "training.label_smoothing", 0.5),
        ("training.plateau_factor=0.999", "training.plateau_factor", 0.999),
        ("training.max_steps=-1", "training.max_steps", -1),  # max_epochs 10 still stops the run
        ("training.max_epochs=1", "training.max_epochs", 1),
        ("training.devices=2", "training.devices", "2"),  # an int where a string is expected
        ("training.devices=0,1", "training.devices", "0,1"),
        # generation
        ("generation.length_penalty=average", "generation.length_penalty", "average"),
        ("generation.alpha=10", "generation.alpha", 10.0),
        ("generation.n_best=5", "generation.n_best", 5),  # equal to beam_size is allowed
        ("generation.max_len_a=0", "generation.max_len_a", 0.0),
        ("generation.shortlist=0", "generation.shortlist", 0),
    ],
)
def test_a_valid_value_loads(override, attribute, expected):
    section, _, name = attribute.rpartition(".")
    cfg = load_config(None, [override])
    value = getattr(getattr(cfg, section) if section else cfg, name)
    assert value == expected and type(value) is type(expected)


def test_floats_given_as_ints_become_floats():
    cfg = config_from_dict(nested(**{"training.lr": 1, "model.dropout": 0, "generation.alpha": 2}))
    assert (cfg.training.lr, cfg.model.dropout, cfg.generation.alpha) == (1.0, 0.0, 2.0)
    assert all(type(x) is float for x in (cfg.training.lr, cfg.model.dropout, cfg.generation.alpha))


# --------------------------------------------------------------------------------------------------
# Every check in __post_init__: key, bad value and what is allowed


BAD_VALUES = [
    # tokenizer
    ("tokenizer.model_type", "wordpiece",
     "tokenizer.model_type must be one of unigram, bpe; got 'wordpiece'"),
    ("tokenizer.vocab_size", 7, "tokenizer.vocab_size must be >= 8; got 7"),
    ("tokenizer.character_coverage", 0.89,
     "tokenizer.character_coverage must be >= 0.9 and <= 1.0; got 0.89"),
    ("tokenizer.character_coverage", 1.01,
     "tokenizer.character_coverage must be >= 0.9 and <= 1.0; got 1.01"),
    ("tokenizer.input_sentence_size", -1, "tokenizer.input_sentence_size must be >= 0; got -1"),
    ("tokenizer.num_threads", 0, "tokenizer.num_threads must be >= 1; got 0"),
    ("tokenizer.seed", -1, "tokenizer.seed must be >= 0 and <= 4294967295; got -1"),
    ("tokenizer.seed", 2**32, "tokenizer.seed must be >= 0 and <= 4294967295; got 4294967296"),
    ("tokenizer.sample_sentences", -1, "tokenizer.sample_sentences must be >= 0; got -1"),
    # data
    ("data.format", "csv", "data.format must be one of auto, text, tsv, jsonl, parquet; got 'csv'"),
    ("data.encoding_errors", "ignore", "data.encoding_errors must be one of strict, replace; got 'ignore'"),
    ("data.min_len", -1, "data.min_len must be >= 0; got -1"),
    ("data.max_len", 0, "data.max_len must be >= 1; got 0"),
    ("data.min_len", 101, "data.min_len (101) must be <= data.max_len (100)"),
    ("data.max_ratio", 0.5, "data.max_ratio must be >= 1.0; got 0.5"),
    ("data.batch_tokens", 0, "data.batch_tokens must be >= 1; got 0"),
    ("data.batch_tokens", 100,
     "data.batch_tokens (100) must be > data.max_len (100), or the longest sentence fits in no batch"),
    ("data.max_sentences", -1, "data.max_sentences must be >= 0; got -1"),
    ("data.bucket_width", 0, "data.bucket_width must be >= 1; got 0"),
    ("data.num_proc", 0, "data.num_proc must be >= 1; got 0"),
    ("data.max_valid_sentences", -1, "data.max_valid_sentences must be >= 0; got -1"),
    ("data.seed", 2**32, "data.seed must be >= 0 and <= 4294967295; got 4294967296"),
    ("data.shuffle_buffer", 0, "data.shuffle_buffer must be >= 1; got 0"),
    ("data.window", 0, "data.window must be >= 1; got 0"),
    ("data.num_workers", -1, "data.num_workers must be >= 0; got -1"),
    ("data.worker_timeout", -1.0, "data.worker_timeout must be >= 0.0; got -1.0"),
    ("data.sample_alpha", -0.1, "data.sample_alpha must be >= 0.0; got -0.1"),
    # model
    ("model.emb_dim", 0, "model.emb_dim must be >= 1; got 0"),
    ("model.hidden_size", 0, "model.hidden_size must be >= 1; got 0"),
    ("model.enc_layers", 0, "model.enc_layers must be >= 1; got 0"),
    ("model.dec_layers", -2, "model.dec_layers must be >= 1; got -2"),
    ("model.dropout", -0.1, "model.dropout must be >= 0.0 and <= 0.9; got -0.1"),
    ("model.dropout", 0.95, "model.dropout must be >= 0.0 and <= 0.9; got 0.95"),
    ("model.word_dropout", -0.1, "model.word_dropout must be >= 0.0 and <= 0.9; got -0.1"),
    ("model.cell", "gru", "model.cell must be one of lstm, peephole, cifg; got 'gru'"),
    ("model.attention", "additive", "model.attention must be one of dot, general, bahdanau; got 'additive'"),
    ("model.bridge", "mlp", "model.bridge must be one of linear, zero; got 'mlp'"),
    # training
    ("training.optimizer", "sgd", "training.optimizer must be one of adam, adamw; got 'sgd'"),
    ("training.schedule", "cosine",
     "training.schedule must be one of constant, warmup_decay, plateau; got 'cosine'"),
    ("training.logger", "wandb", "training.logger must be one of csv, tensorboard, none; got 'wandb'"),
    ("training.seed", 2**32, "training.seed must be >= 0 and <= 4294967295; got 4294967296"),
    ("training.lr", 0, "training.lr must be > 0.0; got 0.0"),
    ("training.betas", [-0.1, 0.999], "training.betas must be >= 0.0 and < 1.0; got -0.1"),
    ("training.betas", [0.9, 1.5], "training.betas must be >= 0.0 and < 1.0; got 1.5"),
    ("training.weight_decay", -1, "training.weight_decay must be >= 0.0; got -1.0"),
    ("training.label_smoothing", 0.6, "training.label_smoothing must be >= 0.0 and <= 0.5; got 0.6"),
    ("training.clip_norm", -1, "training.clip_norm must be >= 0.0; got -1.0"),
    ("training.warmup_steps", -1, "training.warmup_steps must be >= 0; got -1"),
    ("training.accumulate", 0, "training.accumulate must be >= 1; got 0"),
    ("training.num_nodes", 0, "training.num_nodes must be >= 1; got 0"),
    ("training.plateau_factor", 0, "training.plateau_factor must be > 0.0 and < 1.0; got 0.0"),
    ("training.plateau_patience", -1, "training.plateau_patience must be >= 0; got -1"),
    ("training.max_steps", -2, "training.max_steps must be -1 (no limit) or >= 1; got -2"),
    ("training.max_epochs", 0, "training.max_epochs must be -1 (no limit) or >= 1; got 0"),
    ("training.max_time", -1, "training.max_time must be >= 0.0; got -1.0"),
    ("training.val_every_steps", -1, "training.val_every_steps must be >= 0; got -1"),
    ("training.patience", -1, "training.patience must be >= 0; got -1"),
    ("training.keep_checkpoints", -1, "training.keep_checkpoints must be >= 0; got -1"),
    ("training.log_every_steps", 0, "training.log_every_steps must be >= 1; got 0"),
    ("training.num_threads", -1, "training.num_threads must be >= 0; got -1"),
    # generation
    ("generation.beam_size", 0, "generation.beam_size must be >= 1; got 0"),
    ("generation.n_best", 0, "generation.n_best must be >= 1; got 0"),
    ("generation.n_best", 6,
     "generation.n_best must be smaller than or equal to generation.beam_size; got 6 > 5"),
    ("generation.length_penalty", "linear",
     "generation.length_penalty must be one of none, gnmt, average; got 'linear'"),
    ("generation.alpha", -0.5, "generation.alpha must be >= 0.0 and <= 10.0; got -0.5"),
    ("generation.alpha", 10.5, "generation.alpha must be >= 0.0 and <= 10.0; got 10.5"),
    ("generation.min_len", -1, "generation.min_len must be >= 0; got -1"),
    ("generation.max_len_a", -0.5, "generation.max_len_a must be >= 0.0; got -0.5"),
    ("generation.max_len_b", -1, "generation.max_len_b must be >= 0; got -1"),
    ("generation.no_repeat_ngram", -1, "generation.no_repeat_ngram must be >= 0; got -1"),
    ("generation.batch_tokens", 0, "generation.batch_tokens must be >= 1; got 0"),
    ("generation.max_input_len", 0, "generation.max_input_len must be >= 1; got 0"),
    ("generation.shortlist", -1, "generation.shortlist must be >= 0; got -1"),
    ("generation.suggest_k", 0, "generation.suggest_k must be >= 1; got 0"),
    ("generation.suggest_beam", 0, "generation.suggest_beam must be >= 1; got 0"),
    ("generation.suggest_context", 0, "generation.suggest_context must be >= 1; got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_each_check_names_the_key_the_bad_value_and_what_is_allowed(key, value, message):
    assert error_of(nested(**{key: value})) == message


def test_every_checked_field_has_a_bad_value_in_the_table():
    # a field whose check is never exercised here is a field whose message nobody has read
    fields = {f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    unchecked = {  # plain strings and switches: any value of the right type is fine
        "tokenizer.byte_fallback", "tokenizer.joint", "data.train", "data.valid", "data.test",
        "data.src_lang", "data.tgt_lang", "data.streaming", "data.skip_bad_lines", "model.bidirectional",
        "model.input_feeding",
        "model.tie_output", "model.tie_source", "training.out_dir", "training.init_from",
        "training.accelerator", "training.devices", "training.strategy", "training.precision",
        "training.progress_bar", "generation.ban_unk",
    }  # fmt: skip
    assert fields - unchecked == {key for key, _, _ in BAD_VALUES}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (nested(**{"model.bidirectional": True, "model.hidden_size": 511}),
         "model.hidden_size must be even with model.bidirectional; got 511"),
        (nested(**{"model.tie_source": True, "tokenizer.joint": False}),
         "model.tie_source needs tokenizer.joint: true (one vocabulary for both sides)"),
        (nested(**{"data.streaming": True, "data.sample_alpha": 0.1}),
         "data.sample_alpha needs the in-memory training split: a streamed one (data.streaming) is not "
         "sampled yet; set data.streaming=false or data.sample_alpha=0"),
        (nested(**{"tokenizer.model_type": "bpe", "data.sample_alpha": 1.0}),
         "data.sample_alpha must be < 1 with tokenizer.model_type bpe (it is the rate at which merges are "
         "dropped); got 1.0"),
        (nested(**{"training.max_steps": -1, "training.max_epochs": -1}),  # max_time is 0 by default
         "training needs a stopping point: set max_steps, max_epochs or max_time"),
        (nested(**{"data.max_len": 10, "data.min_len": 11}),
         "data.min_len (11) must be <= data.max_len (10)"),
        (nested(**{"generation.beam_size": 2, "generation.n_best": 3}),
         "generation.n_best must be smaller than or equal to generation.beam_size; got 3 > 2"),
    ],
)  # fmt: skip
def test_checks_across_two_fields(data, message):
    assert error_of(data) == message


def test_the_other_side_of_each_two_field_check_loads():
    assert config_from_dict(
        nested(**{"model.bidirectional": True, "model.hidden_size": 512})
    ).model.bidirectional
    assert config_from_dict(nested(**{"model.tie_source": True})).model.tie_source  # joint by default
    # any one stopping point is enough
    for stop in ({"max_steps": 5}, {"max_epochs": 1}, {"max_time": 0.5}):
        limits = {"max_steps": -1, "max_epochs": -1} | stop
        assert config_from_dict({"training": limits}).training == TrainingConfig(**limits)


def test_task_must_be_translation_or_lm():
    assert error_of({"task": "classification"}).endswith(
        "task must be one of translation, lm; got 'classification'"
    )


def test_task_error_names_the_key_as_set_spells_it():
    assert error_of({"task": "classification"}) == "task must be one of translation, lm; got 'classification'"


@pytest.mark.parametrize("key", fields_of_type(float))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_refuses_nan_and_infinity(key, value):
    # NaN passes every comparison; no setting means anything at infinity
    message = error_of(nested(**{key: value}))
    assert message.startswith(f"{key} must be a finite number") and message.endswith(f"; got {value!r}")


# --------------------------------------------------------------------------------------------------
# Types


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.hidden_size", "big", "model.hidden_size must be int; got 'big' (str)"),
        # Python counts bool as an int; a config does not
        ("model.hidden_size", True, "model.hidden_size must be int; got True (bool)"),
        ("model.hidden_size", 256.0, "model.hidden_size must be int; got 256.0 (float)"),
        ("model.hidden_size", None, "model.hidden_size must be int; got None (NoneType)"),
        ("model.cell", ["lstm"], "model.cell must be str; got ['lstm'] (list)"),
        ("model.cell", {"name": "lstm"}, "model.cell must be str; got {'name': 'lstm'} (dict)"),
        ("data.src_lang", False, "data.src_lang must be str; got False (bool)"),  # `src_lang: no` in YAML
        ("model.bidirectional", "maybe", "model.bidirectional must be bool; got 'maybe' (str)"),
        ("model.bidirectional", 1, "model.bidirectional must be bool; got 1 (int)"),
        ("training.lr", "fast", "training.lr must be float; got 'fast' (str)"),
        ("training.lr", False, "training.lr must be float; got False (bool)"),
        ("training.betas", [0.9], "training.betas must be a list of float, float; got [0.9] (list)"),
        ("training.betas", "0.9,0.99", "training.betas must be a list of float, float; got '0.9,0.99' (str)"),
        ("training.betas", [0.9, "x"], "training.betas must be float; got 'x' (str)"),
    ],
)  # fmt: skip
def test_a_wrong_type_names_the_key_the_value_and_the_type_expected(key, value, message):
    assert error_of(nested(**{key: value})) == message


@pytest.mark.parametrize("key", fields_of_type(int))
def test_every_int_refuses_a_bool_and_a_string(key):
    assert error_of(nested(**{key: True})) == f"{key} must be int; got True (bool)"
    assert error_of(nested(**{key: "12"})) == f"{key} must be int; got '12' (str)"


@pytest.mark.parametrize("key", fields_of_type(bool))
def test_every_bool_refuses_a_string(key):
    assert error_of(nested(**{key: "true"})) == f"{key} must be bool; got 'true' (str)"


@pytest.mark.parametrize(("data", "message"), [
    ({"model": 5}, "model must be a mapping of keys to values; got 5"),
    ({"training": ["max_steps", 5]}, "training must be a mapping of keys to values; got ['max_steps', 5]"),
    ({"task": ["lm"]}, "task must be str; got ['lm'] (list)"),
])  # fmt: skip
def test_a_section_must_be_a_mapping(data, message):
    assert error_of(data) == message


@pytest.mark.parametrize("section", SECTIONS)
def test_an_empty_section_means_its_defaults(section, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n  # every key commented out\n", encoding="utf-8")
    assert load_config(path) == Config()


# --------------------------------------------------------------------------------------------------
# Unknown keys


def test_an_unknown_top_level_key_lists_the_sections():
    assert error_of({"modle": {"hidden_size": 3}}) == (
        "unknown key modle; allowed keys: task, tokenizer, data, model, training, generation"
    )


def test_an_unknown_model_key_lists_the_model_keys():
    assert error_of(nested(**{"model.hidden": 256})) == (
        "unknown key model.hidden; allowed keys: emb_dim, hidden_size, enc_layers, dec_layers, "
        "bidirectional, dropout, word_dropout, cell, attention, input_feeding, bridge, tie_output, tie_source"
    )


@pytest.mark.parametrize("section", SECTIONS)
def test_an_unknown_key_in_any_section_is_an_error_naming_it(section):
    names = ", ".join(f.name for f in dataclasses.fields(SECTIONS[section]))
    assert error_of({section: {"typo": 1}}) == f"unknown key {section}.typo; allowed keys: {names}"


def test_an_unknown_key_in_a_file_and_in_a_set_is_blamed_on_its_source(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("generation:\n  beam: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: unknown key generation.beam; allowed keys: beam_size, n_best")
    with pytest.raises(ConfigError) as e:
        load_config(None, ["generation.beam=4"])
    assert str(e.value).startswith("--set generation.beam=4: unknown key generation.beam; allowed keys: ")


# --------------------------------------------------------------------------------------------------
# --set KEY=VALUE


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("model.hidden_size=256", ["model", "hidden_size"], 256),
        (" model . dropout = 0.1", ["model", "dropout"], 0.1),  # spaces around the parts are dropped
        ("task=lm", ["task"], "lm"),
        ("data.train=a=b.tsv", ["data", "train"], "a=b.tsv"),  # only the first = splits
        ("data.valid=", ["data", "valid"], ""),  # empty: no validation
        ("training.betas=[0.8, 0.9]", ["training", "betas"], [0.8, 0.9]),
        ("training.lr=1e-3", ["training", "lr"], "1e-3"),  # YAML 1.1; the float field converts it
        ("training.max_time=.inf", ["training", "max_time"], math.inf),
        ("model.bidirectional=true", ["model", "bidirectional"], True),
        ("data.src_lang=no", ["data", "src_lang"], False),  # YAML 1.1: quote it, 'no'
        ("data.train=[unclosed", ["data", "train"], "[unclosed"),  # not YAML: kept as text
        ("model=~", ["model"], None),
    ],
)
def test_parse_override_reads_the_value_as_yaml(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("text", ["model.hidden_size", "", "=256", ".dropout=0.1", "model.=1", "a..b=1"])
def test_a_malformed_override_says_how_to_write_one(text):
    with pytest.raises(ConfigError) as e:
        parse_override(text)
    assert str(e.value) == (
        f"--set {text}: malformed override; write KEY=VALUE with a non-empty dotted key, "
        "e.g. --set model.hidden_size=256"
    )


def test_overrides_apply_in_order_on_top_of_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden_size: 32\n  emb_dim: 16\n", encoding="utf-8")
    cfg = load_config(path, ["model.hidden_size=64", "model.hidden_size=128", "generation.beam_size=3"])
    assert (cfg.model.hidden_size, cfg.model.emb_dim, cfg.generation.beam_size) == (128, 16, 3)


def test_an_override_blames_itself_for_its_error():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.dropout=0.1", "model.hidden_size=0"])
    assert str(e.value) == "--set model.hidden_size=0: model.hidden_size must be >= 1; got 0"


def test_an_override_below_a_plain_value_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: translation\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["task.name=lm"])
    assert str(e.value) == "--set task.name=lm: task is not a section"


def test_an_override_into_an_empty_section_of_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  # hidden_size: 32\n", encoding="utf-8")
    assert load_config(path, ["model.hidden_size=64"]).model.hidden_size == 64


# --------------------------------------------------------------------------------------------------
# The YAML file


def test_a_key_given_twice_is_an_error_but_the_same_name_in_two_sections_is_not(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  seed: 1\ntraining:\n  seed: 2\n", encoding="utf-8")
    cfg = load_config(path)
    assert (cfg.data.seed, cfg.training.seed) == (1, 2)
    path.write_text("training:\n  seed: 1\n  lr: 0.1\n  seed: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path} line 4: not valid YAML ('seed' appears twice (first on line 2); keep one)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [1, 2\n", " line 2: not valid YAML (expected ',' or ']', but got '<stream end>')"),
        ("- model\n- data\n", ": a config must be a mapping of sections; got list"),
        ("just words\n", ": a config must be a mapping of sections; got str"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_one_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}{message}"


def test_a_missing_or_empty_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.yaml")
    assert (
        str(e.value) == f"config file {tmp_path / 'nope.yaml'} does not exist; pass --config with a YAML file"
    )
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    assert load_config(tmp_path / "empty.yaml") == Config()


def test_a_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("data:\n  src_lang: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: not valid YAML (") and "can't decode byte 0xe9" in str(e.value)


def test_config_errors_are_user_errors():
    # the CLI turns UserError into one line and exit code 1
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------------------------------
# Save and load


NON_DEFAULT = [
    "task=lm", "tokenizer.model_type=bpe", "tokenizer.vocab_size=300", "tokenizer.joint=false",
    "data.train=corpus/train.tsv", "data.src_lang=fr", "data.max_ratio=2.5", "model.cell=peephole",
    "model.bidirectional=true", "model.hidden_size=64", "training.betas=[0.8, 0.95]", "training.lr=3e-4",
    "training.devices=0,1", "training.max_time=1.5", "generation.beam_size=8", "generation.n_best=3",
]  # fmt: skip


@pytest.mark.parametrize(
    "cfg",
    [
        Config(),
        load_config(None, NON_DEFAULT),
        *(load_config(p) for p in sorted((ROOT / "configs").glob("*.yaml"))),
    ],
    ids=lambda c: f"{c.task}-{c.training.out_dir}",
)
def test_load_save_load_gives_the_same_config(cfg, tmp_path):
    path = tmp_path / "run" / "config.yaml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    save_config(again, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left


def test_the_saved_yaml_is_plain_and_in_section_order(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(load_config(None, NON_DEFAULT), path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))  # plain YAML: no Python tags (the tuple)
    assert list(data) == ["task", "tokenizer", "data", "model", "training", "generation"]
    assert data["training"]["betas"] == [0.8, 0.95] and data["training"]["lr"] == 0.0003
    assert data["training"]["devices"] == "0,1" and data["model"]["hidden_size"] == 64


# --------------------------------------------------------------------------------------------------
# Frozen, and Config.replace


@pytest.mark.parametrize("section", SECTIONS)
def test_configs_cannot_be_changed_in_place(section):
    cfg = Config()
    part = getattr(cfg, section)
    name = dataclasses.fields(part)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(part, name, getattr(part, name))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, section, part)
    assert cfg == Config()


def test_replace_changes_only_what_it_names():
    cfg = load_config(None, ["model.hidden_size=64", "training.max_steps=100"])
    new = cfg.replace(training={"max_steps": 5}, task="lm")
    assert (new.training.max_steps, new.task) == (5, "lm")
    assert new.model == cfg.model and new.data == cfg.data and new.generation == cfg.generation
    assert dataclasses.replace(new.training, max_steps=100) == cfg.training  # the rest of the section kept
    assert cfg.training.max_steps == 100 and cfg.task == "translation"  # the original is untouched


def test_replace_runs_the_checks():
    cfg = Config()
    with pytest.raises(ConfigError, match=r"^model\.hidden_size must be >= 1; got 0$"):
        cfg.replace(model={"hidden_size": 0})
    with pytest.raises(ConfigError, match=r"^unknown key model\.hiden_size; "):
        cfg.replace(model={"hiden_size": 64})
    with pytest.raises(ConfigError, match=r"^generation\.n_best must be smaller than or equal"):
        cfg.replace(generation={"beam_size": 1, "n_best": 2})


def test_replace_merges_into_a_section_and_takes_plain_values_only():
    cfg = load_config(None, ["model.hidden_size=64"])
    assert cfg.replace(model={"cell": "cifg"}).model == ModelConfig(hidden_size=64, cell="cifg")
    with pytest.raises(ConfigError, match=r"^model must be a mapping of keys to values; got ModelConfig\("):
        cfg.replace(model=ModelConfig())  # sections as in YAML; dataclasses.replace changes one object
