"""Shared test setup: offline `datasets` with a private cache, one torch thread, fixture paths."""

import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    # datasets must never reach a hub, and caches must not leak between tests or into ~/.cache
    cache = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # datasets reads HF_DATASETS_CACHE once, when first imported (during collection, before this
    # fixture): point the already-read value at the private cache too
    if (config := sys.modules.get("datasets.config")) is not None:
        monkeypatch.setattr(config, "HF_DATASETS_CACHE", cache / "datasets")


def pytest_configure(config):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch

        torch.set_num_threads(1)  # tests are small; one thread avoids oversubscribing 2 cores
    except ImportError:
        pass


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="module")
def tok():
    """A 400-piece joint tokenizer trained on the tiny fixture's training pairs (data and streaming tests)."""
    from seq2seq_lstm.config import TokenizerConfig
    from seq2seq_lstm.data.tokenizer import Tokenizer

    en = (FIXTURES / "tiny" / "train.en").read_text(encoding="utf-8").splitlines()
    es = (FIXTURES / "tiny" / "train.es").read_text(encoding="utf-8").splitlines()
    return Tokenizer.train(en, es, TokenizerConfig(vocab_size=400))
