"""ScaledAdam: the optimizer of the official GPT (s1) fine-tuning, written from its maths.

The official `AR.modules.optim.ScaledAdam` (from icefall) is an Adam whose update of each tensor is scaled by
that tensor's root-mean-square value, plus a learned overall scale per tensor. It is re-written here rather
than vendored so that Herald's training path carries no Lightning-era code and its state is plain tensors
and numbers (savable with `torch.save`, loadable with `torch.load(weights_only=True)`). It reproduces the
official numbers (tests/gptsovits/test_t2s_train.py checks two steps against the reference vectors),
including these behaviours of the official code:

- parameters of the same shape and dtype are stacked and updated as one tensor; the stack's state lives in
  the state of its first parameter; a parameter without a gradient is stepped with a zero gradient;
- single-element parameters take a plain Adam path (lr * scalar_lr_scale, clamped to +-scalar_max);
- no bias correction of the momentum; the second moment is bias-corrected only while 1 - beta2^t < 0.99;
- the size (scale) update runs every `size_update_period` steps from step size_update_period - 1 on;
- the clipping scale is estimated only every `clipping_update_period` steps, so nothing is clipped before
  that many steps, and it then scales only the gradients fed to the size update: the Adam update itself
  reads the unclipped gradient (the official code clips into a copy that `_step` never sees).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer


class ScaledAdam(Optimizer):
    """Adam with per-tensor rms-scaled updates and a learned per-tensor scale (official s1 settings)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.01,
        *,
        betas: tuple[float, float] = (0.9, 0.95),
        clipping_scale: float | None = 2.0,
        clipping_update_period: int = 1000,
        scalar_lr_scale: float = 0.1,
        eps: float = 1.0e-8,
        param_min_rms: float = 1.0e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
    ) -> None:
        if not 0 < betas[0] <= betas[1] < 1:
            raise ValueError(f"need 0 < beta1 <= beta2 < 1, got {betas}")
        defaults = dict(
            lr=lr, betas=betas, clipping_scale=clipping_scale, clipping_update_period=clipping_update_period,
            scalar_lr_scale=scalar_lr_scale, eps=eps, param_min_rms=param_min_rms, param_max_rms=param_max_rms,
            scalar_max=scalar_max, size_update_period=size_update_period,
        )
        super().__init__(params, defaults)

    @staticmethod
    def _stacks(params: list[Tensor]) -> list[list[Tensor]]:
        """Parameters grouped by (dtype, shape), in the official (sorted-key) order."""
        by_key: dict[tuple, list[Tensor]] = {}
        for p in params:
            by_key.setdefault((str(p.dtype), *p.shape), []).append(p)
        return [by_key[key] for key in sorted(by_key)]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - the torch.optim signature
        """One update of every parameter."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            stacks = self._stacks(group["params"])
            stacked = []
            for members in stacks:
                p = torch.stack([m.detach() for m in members])  # (N, *shape)
                grad = torch.stack([torch.zeros_like(m) if m.grad is None else m.grad for m in members])
                stacked.append((p, grad, self.state[members[0]]))
            clipping = 1.0 if not stacked[0][2] else self._clipping_scale(group, stacked)
            for p, grad, state in stacked:
                if grad.is_sparse:
                    raise RuntimeError("ScaledAdam does not support sparse gradients")
                if not state:
                    self._init_state(group, p, state)
                self._step_stack(group, p, grad, state, clipping)
            for (p, _, _), members in zip(stacked, stacks, strict=True):
                for i, m in enumerate(members):
                    m.copy_(p[i])
        return loss

    @staticmethod
    def _rms(p: Tensor) -> Tensor:
        return (p**2).mean(dim=list(range(1, p.ndim)), keepdim=True).sqrt()  # (N, 1, ...)

    def _init_state(self, group: dict, p: Tensor, state: dict) -> None:
        state["step"] = 0
        # "delta" is the momentum of the whole parameter change (Adam step and scale step together).
        state["delta"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
        if p[0].numel() > 1:
            state["param_rms"] = self._rms(p)
            state["scale_exp_avg_sq"] = torch.zeros_like(state["param_rms"])
            state["scale_grads"] = torch.zeros(group["size_update_period"], *state["param_rms"].shape,
                                               dtype=p.dtype, device=p.device)

    def _clipping_scale(self, group: dict, stacked: list[tuple[Tensor, Tensor, dict]]) -> float:
        """Factor <= 1 for the gradients; 1 until the median gradient norm has been estimated once."""
        scale = group["clipping_scale"]
        first = stacked[0][2]
        step = first["step"]
        if scale is None or step == 0:
            return 1.0
        period = group["clipping_update_period"]
        device = stacked[0][0].device
        sumsq = torch.tensor(0.0, device=device)
        for p, grad, state in stacked:
            if p[0].numel() == 1:
                sumsq += (grad**2).sum()
            else:
                sumsq += ((grad * state["param_rms"]) ** 2).sum()
        norm = sumsq.sqrt()
        if "model_norms" not in first:
            first["model_norms"] = torch.zeros(period, device=device)
        first["model_norms"][step % period] = norm
        if step % period == 0:
            ordered = first["model_norms"].sort()[0]
            median = ordered[min(period - 1, (period // 4) * 2)].item()
            first["model_norm_threshold"] = scale * median
            first["num_clipped"] = 0
        if step < period:
            return 1.0
        if "model_norm_threshold" not in first:
            return 1.0
        factor = min(1.0, (first["model_norm_threshold"] / (norm + 1.0e-20)).item())
        if factor < 1.0:
            first["num_clipped"] += 1
        return factor

    def _step_stack(self, group: dict, p: Tensor, grad: Tensor, state: dict, clipping: float) -> None:
        """Update one stack of same-shape parameters p (N, *shape) in place."""
        period = group["size_update_period"]
        beta1 = group["betas"][0]
        step = state["step"]
        state["delta"].mul_(beta1)
        if p[0].numel() > 1:
            clipped = grad * clipping if clipping != 1.0 else grad
            dims = list(range(1, p.ndim))
            state["scale_grads"][step % period] = (p * clipped).sum(dim=dims, keepdim=True)
            if step % period == period - 1:
                state["param_rms"].copy_(self._rms(p))
                if step > 0:
                    self._size_update(group, p, state)
            self._adam_step(group, p, grad, state)
        else:
            self._scalar_step(group, p, grad, state)
        state["step"] = step + 1

    @staticmethod
    def _size_update(group: dict, p: Tensor, state: dict) -> None:
        """Learn each tensor's overall scale (as if p = p_unit * exp(scale)), within [min_rms, max_rms]."""
        beta1, beta2 = group["betas"]
        size_lr = group["lr"] * group["scalar_lr_scale"]
        scale_grads = state["scale_grads"]  # (period, N, 1, ...)
        period = scale_grads.shape[0]
        beta2_period = beta2**period  # one size step per period: decay faster
        scale_exp_avg_sq = state["scale_exp_avg_sq"]  # (N, 1, ...)
        scale_exp_avg_sq.mul_(beta2_period).add_((scale_grads**2).mean(dim=0), alpha=1 - beta2_period)
        size_step = (state["step"] + 1) // period
        bias_correction2 = 1 - beta2_period**size_step
        denom = scale_exp_avg_sq.sqrt() + group["eps"]
        scale_step = -size_lr * (bias_correction2**0.5) * scale_grads.sum(dim=0) / denom
        rms = state["param_rms"]
        scale_step.masked_fill_(rms < group["param_min_rms"], 0.0)  # too small: do not shrink further
        scale_step.masked_fill_(rms > group["param_max_rms"], -size_lr * period)  # too large: shrink
        state["delta"].add_(p * scale_step, alpha=1 - beta1)

    @staticmethod
    def _adam_step(group: dict, p: Tensor, grad: Tensor, state: dict) -> None:
        beta1, beta2 = group["betas"]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2 = 1 - beta2 ** (state["step"] + 1)
        if bias_correction2 < 0.99:
            exp_avg_sq = exp_avg_sq * (1.0 / bias_correction2)  # not in place: the state stays uncorrected
        denom = exp_avg_sq.sqrt()
        denom += group["eps"]
        alpha = -group["lr"] * (1 - beta1) * state["param_rms"].clamp(min=group["param_min_rms"])  # (N, 1, ...)
        state["delta"].add_(grad / denom * alpha)
        p.add_(state["delta"])

    @staticmethod
    def _scalar_step(group: dict, p: Tensor, grad: Tensor, state: dict) -> None:
        """Plain Adam (no momentum bias correction) for single-element parameters: no rms to scale by."""
        beta1, beta2 = group["betas"]
        lr = group["lr"] * group["scalar_lr_scale"]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2 = 1 - beta2 ** (state["step"] + 1)
        denom = (exp_avg_sq / bias_correction2).sqrt() + group["eps"]
        state["delta"].add_(grad / denom, alpha=-lr * (1 - beta1))
        p.clamp_(min=-group["scalar_max"], max=group["scalar_max"])
        p.add_(state["delta"])
