"""A weight used at every step of a time loop: cast once, and one gradient product for all steps.

A decoder with input feeding steps through time in Python, and autograd sees each step's use of a
weight as a separate product. Per step and weight it then casts the float32 weight to bf16 (Lightning
runs autocast with its cast cache off), forms a (O, I) weight gradient from only B rows, casts that back
to float32 and adds it to the others. On a CPU those casts and thin products are a large share of a
bf16 training step (benchmarks/RESULTS.md, Training speed).

``SharedLinear`` does the same algebra in another order. The weight is cast once per forward pass;
each step's backward returns only the input gradient and keeps the step's output gradient; and the
weight gradient is one product over all steps, the sum over t of g_t^T x_t = G^T X with G (T*B, O)
and X (T*B, I)::

    lin = SharedLinear(weight, torch.bfloat16)   # weight (O, I), float32, requires grad
    for t in range(T):
        y_t = lin(x_t)                           # (B, I) -> (B, O) == x_t @ weight.T in bf16
    loss.backward()                              # weight.grad: one (T*B)-row product

The ordering needs no assumption about the graph: the cast is an input of every step, so autograd runs
its backward (which forms the weight gradient) only after every step's backward has run. Inputs are
kept detached, so the record holds no reference back into the graph. Double backward is not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _Record:
    """Per forward pass: each step's input (detached, in the compute dtype) and output gradient."""

    __slots__ = ("inputs", "grads")

    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.grads: list[Tensor | None] = []


class _Cast(torch.autograd.Function):
    """weight (O, I) -> its copy in the compute dtype; backward: the weight gradient of all steps."""

    @staticmethod
    def forward(ctx, weight: Tensor, dtype: torch.dtype, record: _Record) -> Tensor:
        ctx.record, ctx.weight_dtype = record, weight.dtype
        ctx.set_materialize_grads(False)  # the steps hand back no gradient for the copy
        # a copy even when the dtype is the same: autograd needs an output apart from the input
        return weight.detach().to(dtype, copy=True)

    @staticmethod
    def backward(ctx, _unused: Tensor | None) -> tuple[Tensor | None, None, None]:
        record = ctx.record
        pairs = [(g, x) for g, x in zip(record.grads, record.inputs, strict=True) if g is not None]
        record.inputs, record.grads = [], []
        if not pairs:
            return None, None, None
        grads = torch.cat([g for g, _ in pairs])  # (N, O), N = rows over all steps
        inputs = torch.cat([x for _, x in pairs])  # (N, I)
        if grads.dtype == torch.float16:
            # fp16 has a narrow range: sum the (loss-scaled) products in float32, as autograd would
            grads, inputs = grads.float(), inputs.float()
        # one rounding of the whole sum (bf16 products accumulate in float32 inside the GEMM)
        return grads.t().mm(inputs).to(ctx.weight_dtype), None, None


class _Step(torch.autograd.Function):
    """x (B, I) -> x @ W^T (B, O) with W the cast copy; backward: the input gradient only."""

    @staticmethod
    def forward(ctx, x: Tensor, low: Tensor, record: _Record) -> Tensor:
        ctx.save_for_backward(low)
        ctx.record, ctx.index, ctx.x_dtype = record, len(record.inputs), x.dtype
        x = x.to(low.dtype)
        record.inputs.append(x.detach())
        record.grads.append(None)
        return x.mm(low.t())

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None]:
        (low,) = ctx.saved_tensors
        grad = grad.to(low.dtype)
        ctx.record.grads[ctx.index] = grad
        grad_x = grad.mm(low).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        return grad_x, None, None


class SharedLinear:
    """``x @ weight.T`` for every step of one forward pass, with the weight cast once to ``dtype`` and
    its gradient formed in one product over all steps (see the module docstring). Build a new one for
    each forward pass; ``weight`` may be a parameter or a function of parameters (a concatenation)."""

    def __init__(self, weight: Tensor, dtype: torch.dtype) -> None:
        self._record = _Record()
        self._low = _Cast.apply(weight, dtype, self._record)  # (O, I)

    def __call__(self, x: Tensor) -> Tensor:
        """x (B, I) -> (B, O) in the compute dtype."""
        return _Step.apply(x, self._low, self._record)


def compute_dtype(weight: Tensor) -> torch.dtype:
    """The dtype autocast would multiply ``weight`` in here: autocast's on its device, else its own."""
    device = weight.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype
