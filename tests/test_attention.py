"""Attention: hand-checkable scores, exact zeros on padding, rows that sum to one."""

import math

import pytest
import torch

from seq2seq_lstm.config import ATTENTIONS as CONFIG_ATTENTIONS
from seq2seq_lstm.model.attention import ATTENTIONS, GeneralAttention


def test_registry_matches_config_choices():
    assert set(ATTENTIONS) == set(CONFIG_ATTENTIONS)


def test_dot_attention_known_values():
    # one query, two real source positions and one padded: scores q.k = 1 and 0, padding ignored
    attn = ATTENTIONS["dot"](2)
    query = torch.tensor([[1.0, 0.0]])
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [100.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    context, weights = attn(query, attn.project_keys(memory), memory, mask)
    e = math.e
    torch.testing.assert_close(weights, torch.tensor([[e / (e + 1), 1 / (e + 1), 0.0]]))
    torch.testing.assert_close(context, torch.tensor([[e / (e + 1), 1 / (e + 1)]]))


def test_general_attention_known_values():
    # W_a = [[0, 1], [1, 0]] swaps the coordinates of each key: scores are 0 and 2 instead of 1 and 0
    attn = GeneralAttention(2)
    with torch.no_grad():
        attn.linear_in.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    query = torch.tensor([[1.0, 0.0]])
    memory = torch.tensor([[[1.0, 0.0], [2.0, 3.0]]])
    mask = torch.tensor([[True, True]])
    keys = attn.project_keys(memory)
    torch.testing.assert_close(keys, torch.tensor([[[0.0, 1.0], [3.0, 2.0]]]))
    context, weights = attn(query, keys, memory, mask)
    w1 = math.exp(3) / (1 + math.exp(3))
    torch.testing.assert_close(weights, torch.tensor([[1 - w1, w1]]))
    torch.testing.assert_close(context, torch.tensor([[(1 - w1) * 1 + w1 * 2, w1 * 3]]))


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_padding_gets_exactly_zero_weight_and_rows_sum_to_one(name):
    torch.manual_seed(0)
    B, S, H = 4, 6, 8
    attn = ATTENTIONS[name](H)
    memory = torch.randn(B, S, H)
    lengths = torch.tensor([6, 3, 1, 5])
    mask = torch.arange(S)[None] < lengths[:, None]
    context, weights = attn(torch.randn(B, H), attn.project_keys(memory), memory, mask)
    assert context.shape == (B, H) and weights.shape == (B, S)
    assert torch.all(weights[~mask] == 0.0)
    assert torch.all(weights[mask] > 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    assert torch.all(weights[2, 0] == 1.0)  # a single real token takes all the weight


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_padding_values_do_not_change_the_context(name):
    torch.manual_seed(1)
    B, S, H = 2, 5, 4
    attn = ATTENTIONS[name](H)
    memory = torch.randn(B, S, H)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    query = torch.randn(B, H)
    noisy = memory.clone()
    noisy[1, 2:] = 1e4  # garbage on padded positions
    a, _ = attn(query, attn.project_keys(memory), memory, mask)
    b, _ = attn(query, attn.project_keys(noisy), noisy, mask)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_batched_over_steps_equals_one_step_at_a_time(name):
    torch.manual_seed(2)
    B, T, S, H = 3, 4, 5, 6
    attn = ATTENTIONS[name](H)
    memory = torch.randn(B, S, H)
    mask = torch.arange(S)[None] < torch.tensor([5, 2, 4])[:, None]
    keys = attn.project_keys(memory)
    queries = torch.randn(B, T, H)
    context, weights = attn(queries, keys, memory, mask)
    assert context.shape == (B, T, H) and weights.shape == (B, T, S)
    for t in range(T):
        c_t, w_t = attn(queries[:, t], keys, memory, mask)
        torch.testing.assert_close(context[:, t], c_t, atol=1e-6, rtol=0)
        torch.testing.assert_close(weights[:, t], w_t, atol=1e-6, rtol=0)
