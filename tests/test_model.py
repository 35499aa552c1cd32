"""Encoder, decoder and models: padding invariance, forward == step loop, reorder, gradient flow, tying."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from seq2seq_lstm.config import Config, ModelConfig
from seq2seq_lstm.errors import ConfigError
from seq2seq_lstm.model import cells
from seq2seq_lstm.model.decoder import Decoder, DecoderState
from seq2seq_lstm.model.encoder import Encoder, reverse_padded
from seq2seq_lstm.model.seq2seq import LanguageModel, Seq2Seq, build_model, count_parameters, model_summary
from seq2seq_lstm.model.word_dropout import drop_words

SRC_V, TGT_V = 17, 19


def tiny(**kw) -> ModelConfig:
    base = dict(emb_dim=6, hidden_size=8, enc_layers=2, dec_layers=2, dropout=0.0)
    return ModelConfig(**{**base, **kw})


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(r) for r in rows])
    out = torch.zeros(len(rows), int(lens.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out, lens


def test_reverse_padded_keeps_padding_in_place():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_padded(x, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


@pytest.mark.parametrize(
    "cell,bidirectional", list(itertools.product(["lstm", "peephole", "cifg"], [False, True]))
)
def test_encoder_gives_a_sentence_the_same_result_alone_and_in_a_padded_batch(cell, bidirectional):
    torch.manual_seed(0)
    enc = Encoder(SRC_V, 6, 8, 2, dropout=0.3, bidirectional=bidirectional, cell=cell).eval()
    rows = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    src, lens = padded(rows)
    memory, mask, (h, c) = enc(src, lens)
    assert memory.shape == (3, 6, 8) and h.shape == c.shape == (2, 3, 8)
    assert mask.tolist()[0] == [True] * 3 + [False] * 3
    assert torch.all(memory[~mask] == 0)
    for i, row in enumerate(rows):
        m1, _, (h1, c1) = enc(*padded([row]))
        n = len(row)
        torch.testing.assert_close(memory[i, :n], m1[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(h[:, i], h1[:, 0], atol=1e-6, rtol=0)
        torch.testing.assert_close(c[:, i], c1[:, 0], atol=1e-6, rtol=0)


def test_decoding_encodes_without_onednn_and_gives_the_training_numbers(monkeypatch):
    """In eval mode the fused encoder runs ATen's LSTM (oneDNN rebuilds its primitive for every new
    length); the numbers are the train-mode (oneDNN) ones up to float rounding, and the process-wide
    flag is back as it was afterwards."""
    torch.manual_seed(0)
    enc = Encoder(SRC_V, 6, 8, 2, dropout=0.0, bidirectional=True)
    src, lens = padded([[5, 6, 7, 8]])  # one sentence: oneDNN's path when enabled
    seen = []
    real = cells.run_lstm

    def spy(*args, **kwargs):
        seen.append(torch.backends.mkldnn.enabled)
        return real(*args, **kwargs)

    monkeypatch.setattr("seq2seq_lstm.model.encoder.run_lstm", spy)
    with torch.no_grad():
        train_memory = enc.train()(src, lens)[0]
        eval_memory = enc.eval()(src, lens)[0]
    assert seen == [True, False]
    assert torch.backends.mkldnn.enabled
    torch.testing.assert_close(eval_memory, train_memory, atol=1e-6, rtol=0)


def test_bidirectional_final_state_is_forward_last_and_backward_first():
    torch.manual_seed(1)
    enc = Encoder(SRC_V, 6, 8, 1, bidirectional=True).eval()
    src, lens = padded([[5, 6, 7, 8], [9, 10]])
    memory, _, (h, _) = enc(src, lens)
    # forward half of the last layer's state = forward output at the last real token; backward half =
    # backward output at the first token
    torch.testing.assert_close(h[-1, 1, :4], memory[1, 1, :4])
    torch.testing.assert_close(h[-1, 1, 4:], memory[1, 0, 4:])


ALL_VARIANTS = list(
    itertools.product(
        ["lstm", "peephole", "cifg"], ["dot", "general", "bahdanau"], [False, True], [False, True]
    )
)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src, lens = padded([[4, 5, 6, 7, 8], [9, 10, 11], [12]])
    tgt_in = torch.randint(4, TGT_V, (3, 4), generator=g)
    tgt_in[:, 0] = 2  # BOS
    return src, lens, tgt_in


@pytest.mark.parametrize("cell,attention,input_feeding,bidirectional", ALL_VARIANTS)
def test_forward_equals_iterated_step(cell, attention, input_feeding, bidirectional):
    torch.manual_seed(2)
    cfg = tiny(cell=cell, attention=attention, input_feeding=input_feeding, bidirectional=bidirectional)
    model = Seq2Seq(cfg, SRC_V, TGT_V).eval()
    src, lens, tgt_in = batch()
    with torch.no_grad():
        logits = model(src, lens, tgt_in)
        state = model.start(src, lens)
        steps = []
        for t in range(tgt_in.size(1)):
            log_probs, state, attn = model.step(tgt_in[:, t], state)
            assert log_probs.dtype == torch.float32 and attn.shape == (3, 5)
            assert torch.all(attn[2, 1:] == 0)  # a one-token source: padding gets no attention
            steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), logits.log_softmax(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,input_feeding", list(itertools.product(["lstm", "cifg"], [False, True])))
def test_sentence_gets_the_same_logits_alone_and_in_a_batch(cell, input_feeding):
    torch.manual_seed(3)
    model = Seq2Seq(tiny(cell=cell, input_feeding=input_feeding, dropout=0.3), SRC_V, TGT_V).eval()
    src, lens, tgt_in = batch()
    with torch.no_grad():
        logits = model(src, lens, tgt_in)
        for i in range(3):
            n = int(lens[i])
            alone = model(src[i : i + 1, :n], lens[i : i + 1], tgt_in[i : i + 1])
            torch.testing.assert_close(logits[i], alone[0], atol=1e-5, rtol=0)


def test_reorder_identity_and_permutation():
    torch.manual_seed(4)
    model = Seq2Seq(tiny(), SRC_V, TGT_V).eval()
    src, lens, tgt_in = batch()
    state = model.start(src, lens)
    _, state, _ = model.step(tgt_in[:, 0], state)
    assert state.batch_size == 3
    same = state.reorder(torch.arange(3))
    for name in ("h", "c", "feed", "memory", "mask", "keys"):
        assert torch.equal(getattr(same, name), getattr(state, name))
    perm = torch.tensor([2, 0, 1])
    moved = state.reorder(perm)
    assert torch.equal(moved.h, state.h[:, perm]) and torch.equal(moved.c, state.c[:, perm])
    assert torch.equal(moved.feed, state.feed[perm]) and torch.equal(moved.memory, state.memory[perm])
    assert torch.equal(moved.mask, state.mask[perm]) and torch.equal(moved.keys, state.keys[perm])
    # stepping the permuted state gives the permuted results
    with torch.no_grad():
        a, _, _ = model.step(tgt_in[:, 1], state)
        b, _, _ = model.step(tgt_in[perm, 1], moved)
    torch.testing.assert_close(b, a[perm])
    # beam search repeats entries: index with repeats grows the batch
    assert state.reorder(torch.tensor([0, 0, 1, 1, 2, 2])).batch_size == 6


@pytest.mark.parametrize("attention", ["general", "bahdanau"])
@pytest.mark.parametrize("input_feeding", [True, False])
def test_beams_share_the_source_side_and_step_like_copied_rows(attention, input_feeding):
    """expand_beams keeps one memory row per sentence (attention takes each sentence's K beams as K
    queries); its steps and reorders give what copying the rows gives, a dropped sentence drops its
    memory row."""
    torch.manual_seed(5)
    model = Seq2Seq(tiny(attention=attention, input_feeding=input_feeding), SRC_V, TGT_V).eval()
    src, lens, tgt_in = batch()
    K = 4
    index = torch.arange(3).repeat_interleave(K)  # (12,)
    with torch.no_grad():
        state = model.start(src, lens)
        shared, copied = state.expand_beams(index, K), state.reorder(index)
        assert shared.batch_size == copied.batch_size == 12 and shared.memory.size(0) == 3
        tokens = torch.randint(4, TGT_V, (3, 12))
        for t in range(2):
            (a, shared, wa), (b, copied, wb) = model.step(tokens[t], shared), model.step(tokens[t], copied)
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
            torch.testing.assert_close(wa, wb, atol=1e-6, rtol=0)
        # a beam shuffle inside each sentence, then sentence 1 finishes: its K rows and memory row leave
        shuffle = torch.tensor([3, 3, 0, 1, 5, 4, 4, 7, 8, 11, 11, 9])
        shared = shared.reorder(shuffle, same_source=True)
        copied = copied.reorder(shuffle, same_source=True)
        live = torch.tensor([0, 1, 2, 3, 8, 9, 10, 11])
        shared, copied = shared.reorder(live), copied.reorder(live)
        assert torch.equal(shared.memory, state.memory[[0, 2]]) and torch.equal(
            shared.mask, state.mask[[0, 2]]
        )
        (a, _, wa), (b, _, wb) = model.step(tokens[2, live], shared), model.step(tokens[2, live], copied)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(wa, wb, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="already has beams"):
        shared.expand_beams(torch.arange(8), 2)
    with pytest.raises(ValueError, match="must repeat each row"):  # the memory would not follow
        state.expand_beams(torch.tensor([1, 1, 0, 0, 2, 2]), 2)


def test_reorder_keeps_none_fields():
    state = DecoderState(h=torch.zeros(2, 3, 4), c=torch.ones(2, 3, 4))
    moved = state.reorder(torch.tensor([1]))
    assert moved.batch_size == 1 and moved.feed is None and moved.memory is None and moved.keys is None


def test_cat_joins_blocks_of_rows_like_one_reorder():
    """The suggester steps rows taken from several earlier states at once: cat of the blocks is the
    reorder that picks those rows from one state, field by field (memory and keys too)."""
    torch.manual_seed(2)
    model = Seq2Seq(tiny(), SRC_V, TGT_V).eval()
    src, lens, _ = batch()
    with torch.no_grad():
        state = model.start(src, lens)
        _, state, _ = model.step(torch.tensor([2, 2, 2]), state)  # feed is set after a step
    joined = DecoderState.cat([state.reorder(torch.tensor([0, 2])), state.reorder(torch.tensor([1]))])
    want = state.reorder(torch.tensor([0, 2, 1]))
    assert joined.batch_size == 3
    for name in ("h", "c", "feed", "memory", "mask", "keys"):
        assert torch.equal(getattr(joined, name), getattr(want, name)), name
    lm = DecoderState.cat([DecoderState(h=torch.zeros(2, 1, 4), c=torch.ones(2, 1, 4))] * 2)
    assert lm.batch_size == 2 and lm.feed is None and lm.memory is None
    with pytest.raises(ValueError, match="states with beams cannot be joined"):
        DecoderState.cat([state.expand_beams(torch.arange(3).repeat_interleave(2), 2)])


@pytest.mark.parametrize(("kw", "names"), [
    ({"emb_dim": 8}, ["attn_out", "emb_gates", "generator"]),
    ({}, ["attn_out", "emb_gates", "generator", "out_proj"]),  # tied, E 6 < H 8: H -> E first
    ({"emb_dim": 8, "input_feeding": False}, ["attn_out", "generator"]),  # fused: the LSTM's own input
])  # fmt: skip
def test_decoder_names_its_projections_and_replaces_only_those(kw, names):
    decoder = Seq2Seq(tiny(**kw), SRC_V, TGT_V).decoder
    assert sorted(decoder.projections()) == names
    assert sorted(decoder.attention.projections()) == ["linear_in"]  # "general"
    layer = torch.nn.Linear(8, 8, bias=False)
    decoder.replace_projection("attn_out", torch.nn.Linear(16, 8, bias=False))
    decoder.attention.replace_projection("linear_in", layer)
    assert decoder.attention.linear_in is layer
    with pytest.raises(KeyError, match="no projection 'rnn'"):
        decoder.replace_projection("rnn", layer)
    with pytest.raises(KeyError, match="no projection 'energy_layer'"):  # a scoring vector, not one
        Seq2Seq(tiny(attention="bahdanau"), SRC_V, TGT_V).decoder.attention.replace_projection(
            "energy_layer", layer
        )


def loss_of(model, src, lens, tgt_in):
    if isinstance(model, LanguageModel):
        logits = model(tgt_in)
    else:
        logits = model(src, lens, tgt_in)
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full_like(tgt_in[:, :1], 3)], 1)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), ignore_index=0)


def assert_all_gradients_flow(model):
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize(
    "cell,attention,input_feeding,bidirectional,tie",
    [(*v, tie) for v in ALL_VARIANTS for tie in (False, True)],
)
def test_every_parameter_gets_a_gradient(cell, attention, input_feeding, bidirectional, tie):
    torch.manual_seed(5)
    cfg = tiny(
        cell=cell,
        attention=attention,
        input_feeding=input_feeding,
        bidirectional=bidirectional,
        tie_output=tie,
        dropout=0.1,
    )
    model = Seq2Seq(cfg, SRC_V, TGT_V).train()
    loss_of(model, *batch()).backward()
    assert_all_gradients_flow(model)


@pytest.mark.parametrize("bridge,tie_source", [("zero", False), ("linear", True), ("zero", True)])
def test_gradients_with_zero_bridge_and_shared_source_embedding(bridge, tie_source):
    torch.manual_seed(6)
    model = Seq2Seq(tiny(bridge=bridge, tie_source=tie_source, enc_layers=3), TGT_V, TGT_V).train()
    loss_of(model, *batch()).backward()
    assert_all_gradients_flow(model)


@pytest.mark.parametrize("cell", ["lstm", "peephole", "cifg"])
def test_language_model_forward_equals_step_loop_and_gets_gradients(cell):
    torch.manual_seed(7)
    lm = LanguageModel(tiny(cell=cell, dropout=0.2), TGT_V)
    assert lm.decoder.attention is None and not lm.decoder.input_feeding
    _, _, tgt_in = batch()
    lm.eval()
    with torch.no_grad():
        logits = lm(tgt_in)
        state = lm.start(3)
        steps = []
        for t in range(tgt_in.size(1)):
            log_probs, state, attn = lm.step(tgt_in[:, t], state)
            assert attn is None
            steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), logits.log_softmax(-1), atol=1e-5, rtol=0)
    lm.train()
    loss_of(lm, None, None, tgt_in).backward()
    assert_all_gradients_flow(lm)


def test_cells_are_selected_per_model():
    from seq2seq_lstm.model.cells import CIFGLSTMCell, PeepholeLSTMCell

    peep = Seq2Seq(tiny(cell="peephole"), SRC_V, TGT_V)
    cifg = LanguageModel(tiny(cell="cifg"), TGT_V)
    assert any(isinstance(m, PeepholeLSTMCell) for m in peep.encoder.modules())
    assert any(isinstance(m, PeepholeLSTMCell) for m in peep.decoder.modules())
    assert any(isinstance(m, CIFGLSTMCell) for m in cifg.modules())
    assert isinstance(Seq2Seq(tiny(), SRC_V, TGT_V).encoder.rnn.lstm, torch.nn.LSTM)  # the fused kernels


def test_tied_embeddings():
    m = Seq2Seq(tiny(tie_output=True), SRC_V, TGT_V)
    assert m.decoder.generator.weight is m.decoder.embed.weight
    assert m.decoder.out_proj is not None  # hidden 8 != emb 6: projected to the embedding size first
    same = Seq2Seq(tiny(emb_dim=8, tie_output=True), SRC_V, TGT_V)
    assert same.decoder.out_proj is None
    untied = Seq2Seq(tiny(tie_output=False), SRC_V, TGT_V)
    assert untied.decoder.generator.weight is not untied.decoder.embed.weight
    assert count_parameters(m) < count_parameters(untied)
    three = Seq2Seq(tiny(tie_source=True), TGT_V, TGT_V)
    assert three.encoder.embed.weight is three.decoder.embed.weight is three.decoder.generator.weight


def test_tie_source_needs_one_vocabulary():
    with pytest.raises(
        ConfigError, match=r"model.tie_source needs one vocabulary .* source 17 and target 19"
    ):
        Seq2Seq(tiny(tie_source=True), SRC_V, TGT_V)


def test_input_feeding_needs_attention():
    with pytest.raises(ValueError, match="input feeding needs attention"):
        Decoder(TGT_V, 6, 8, 1, attention=None, input_feeding=True)


def test_initialization():
    torch.manual_seed(8)
    m = Seq2Seq(tiny(cell="cifg"), SRC_V, TGT_V)
    for p in m.parameters():
        assert p.abs().max() <= 1.0
    assert all(p.abs().max() <= 0.1 for n, p in m.named_parameters() if "bias" not in n)
    assert torch.all(m.decoder.embed.weight[0] == 0) and torch.all(m.encoder.embed.weight[0] == 0)  # padding
    assert torch.all(m.decoder.rnn.layers[1].bias[:8] == 1.0)  # CIFG's forget block comes first
    lstm = Seq2Seq(tiny(), SRC_V, TGT_V).encoder.rnn.lstm
    assert torch.all(lstm.bias_ih_l0[8:16] + lstm.bias_hh_l0[8:16] == 1.0)


def test_build_model_follows_the_task():
    assert isinstance(build_model(Config(model=tiny()), SRC_V, TGT_V), Seq2Seq)
    lm = build_model(Config(task="lm", model=tiny()), SRC_V, TGT_V)
    assert isinstance(lm, LanguageModel) and lm.decoder.generator.out_features == TGT_V


def test_model_summary_counts_tied_parameters_once():
    m = LanguageModel(tiny(emb_dim=8, dec_layers=1), TGT_V)
    # embedding (= output weight) 19*8, output bias 19, one nn.LSTM layer 4*8*(8+8) + two biases 2*4*8
    assert count_parameters(m) == 19 * 8 + 19 + 4 * 8 * 16 + 2 * 4 * 8
    assert (
        model_summary(m) == f"decoder {count_parameters(m):,} | total {count_parameters(m):,} (LanguageModel)"
    )


@pytest.mark.parametrize(
    "cell,input_feeding", [("lstm", True), ("lstm", False), ("peephole", True), ("cifg", False)]
)
@pytest.mark.parametrize("bf16_kernels", ["this cpu", "none"])
def test_bf16_autocast_trains_and_stays_close_to_fp32(cell, input_feeding, bf16_kernels, monkeypatch):
    # the CPU/GPU mixed-precision path (training.precision: bf16-mixed) runs every op and gives finite grads;
    # "none" simulates an AVX2 CPU, whose oneDNN has no bf16 LSTM: nn.LSTM must run in float32 there
    if bf16_kernels == "none":
        monkeypatch.setattr(cells, "cpu_supports_bf16", lambda: False)
    torch.manual_seed(9)
    model = Seq2Seq(tiny(cell=cell, input_feeding=input_feeding, bidirectional=True), SRC_V, TGT_V).train()
    src, lens, tgt_in = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        memory, _, _ = model.encoder(src, lens)
        logits = model(src, lens, tgt_in)
    assert logits.dtype == torch.bfloat16
    if bf16_kernels == "none":
        assert memory.dtype == torch.float32  # the encoder's nn.LSTM ran outside autocast
    with torch.no_grad():
        reference = model.eval()(src, lens, tgt_in)
    model.train()
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)
    F.cross_entropy(logits.float().reshape(-1, TGT_V), tgt_in.reshape(-1)).backward()
    assert_all_gradients_flow(model)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_log_probs_in_blocks_of_rows_are_the_whole_batchs(dtype, monkeypatch):
    """Decoder._log_probs takes the output layer and log-softmax a block of rows at a time on the CPU;
    each row gets the numbers of the one-block computation (int8: bit for bit)."""
    from seq2seq_lstm.decoding.quantize import convert_weights
    from seq2seq_lstm.model import decoder as decoder_module

    torch.manual_seed(6)
    model = convert_weights(Seq2Seq(tiny(emb_dim=16, hidden_size=32), SRC_V, 500).eval(), dtype)
    src, lens, _ = batch()
    index = torch.arange(3).repeat_interleave(5)
    tokens = torch.randint(4, 500, (15,))
    with torch.no_grad():
        state = model.start(src, lens).reorder(index)
        whole, _, _ = model.step(tokens, state)
        monkeypatch.setattr(decoder_module, "LOGIT_BLOCK_BYTES", 4 * 4 * 500)  # blocks of 4 rows
        blocks, _, _ = model.step(tokens, state)
    if dtype == "int8":
        assert torch.equal(blocks, whole)
    else:
        torch.testing.assert_close(blocks, whole, atol=1e-6, rtol=0)
    assert torch.allclose(blocks.exp().sum(1), torch.ones(15))


def test_word_dropout_zeroes_whole_token_vectors_at_the_rate_and_only_in_training():
    torch.manual_seed(0)
    emb = torch.ones(64, 200, 8)
    out = drop_words(emb, 0.25, training=True)
    dropped = (out == 0).all(-1)  # (B, T): whole vectors, never single units
    assert torch.all(dropped | (out == 1 / 0.75).all(-1))
    assert abs(dropped.float().mean().item() - 0.25) < 0.01  # 12,800 tokens: the rate within 1 point
    assert drop_words(emb, 0.25, training=False) is emb
    assert drop_words(emb, 0.0, training=True) is emb
    step = drop_words(torch.ones(4000, 8), 0.5, training=True)  # a decoder step's (B, E)
    assert abs((step == 0).all(-1).float().mean().item() - 0.5) < 0.03


def test_word_dropout_changes_training_forward_passes_only():
    """Same weights with and without word dropout (and no other dropout): equal logits in eval mode,
    different ones in training, on the source side (encoder) and the decoder inputs alike."""
    torch.manual_seed(0)
    plain = Seq2Seq(tiny(), SRC_V, TGT_V)
    dropping = Seq2Seq(tiny(word_dropout=0.5), SRC_V, TGT_V)
    dropping.load_state_dict(plain.state_dict())
    src, src_lens = padded([[5, 6, 7, 8], [9, 10]])
    tgt_in, _ = padded([[2, 4, 5, 6], [2, 7, 0, 0]])
    plain.eval(), dropping.eval()
    torch.testing.assert_close(dropping(src, src_lens, tgt_in), plain(src, src_lens, tgt_in), atol=0, rtol=0)
    plain.train(), dropping.train()
    torch.manual_seed(1)
    memory = dropping.encoder(src, src_lens)[0]
    assert not torch.allclose(memory, plain.encoder(src, src_lens)[0])
    state = plain.start(src, src_lens)
    torch.manual_seed(1)
    assert not torch.allclose(dropping.decoder(tgt_in, state)[0], plain.decoder(tgt_in, state)[0])


def test_word_dropout_range_is_checked():
    with pytest.raises(ConfigError, match=r"model.word_dropout must be >= 0.0 and <= 0.9; got 1.0"):
        ModelConfig(word_dropout=1.0)
