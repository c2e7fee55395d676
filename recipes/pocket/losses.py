"""The Pocket TTS training objective: LSD flow loss on the per-frame head + EOS BCE.

Notation (shared/notes/pocket.md §4): x1 is a normalised latent frame, x0 = eps ~ N(0, I),
I_t = t*x1 + (1-t)*x0, the head is v(s, t, x | z) and its flow map X_{s,t}(x) = x + (t-s) v(s, t, x).

- diagonal term: ||v(t, t, I_t) - (x1 - x0)||^2 with t ~ sigmoid(N(mean, std));
- self-distillation: s <= t from two logit-normal draws, x_s = I_s,
  d/dt X_{s,t}(x_s) = v(s,t,x_s) + (t-s) dv/dt (a JVP with tangents (0, 1, 0)) must equal
  v(t, t, X_{s,t}(x_s)) evaluated with the head's parameters (and z) frozen: the gradient still
  reaches X through the target's input ("minimal" stop-gradient);
- each term is re-weighted by a learned log-variance w(s, t): l * exp(w) / D - w (official init: w is
  one learned constant, see TimeWeighting);
- L_flow = p_equal * L_diag + (1 - p_equal) / distill_prob * L_distill on the steps where the
  distillation term is drawn (a `distill_prob` fraction of them), p_equal * L_diag otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


TIME_WEIGHTING_INITS = ("official", "output_only")


class TimeWeighting(nn.Module):
    """Learned log-variance w(s, t): an MLP [s, t] -> 32 -> 32 -> 32 -> 1.

    init="official" (default, Kyutai's training code): EVERY layer zero-initialised. Since ReLU'(0) = 0 the
    hidden layers then never receive gradient, so w is one learned constant (the output bias): the validated
    setup. init="output_only" (this recipe's earlier choice, kept as an option): only the output layer is
    zeroed, so w can learn a real dependence on (s, t); not validated at scale. Both start at w = 0, i.e.
    plain 1/D-scaled losses. Only shapes training; never exported."""

    def __init__(self, hidden: int = 32, depth: int = 3, init: str = "official"):
        super().__init__()
        if init not in TIME_WEIGHTING_INITS:
            raise ValueError(f"time weighting init must be one of {TIME_WEIGHTING_INITS}, got {init!r}")
        layers: list[nn.Module] = []
        width = 2
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        zeroed = [m for m in self.net if isinstance(m, nn.Linear)]
        for layer in (zeroed if init == "official" else zeroed[-1:]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([s, t], dim=-1)).squeeze(-1)


@dataclass
class LSDDraws:
    """The random quantities of one LSD evaluation, separated so tests can fix them."""

    noise: torch.Tensor  # [N, D]
    t_diag: torch.Tensor  # [N, 1]
    s: torch.Tensor  # [N, 1]
    t: torch.Tensor  # [N, 1]

    @classmethod
    def sample(cls, target: torch.Tensor, mean: float = 0.4, std: float = 1.0) -> "LSDDraws":
        n = target.shape[0]
        t_diag = torch.sigmoid(torch.randn(n, 1, device=target.device, dtype=target.dtype) * std + mean)
        logits = torch.randn(n, 2, device=target.device, dtype=target.dtype) * std + mean
        s = torch.sigmoid(logits.min(dim=-1, keepdim=True).values)
        t = torch.sigmoid(logits.max(dim=-1, keepdim=True).values)
        return cls(noise=torch.randn_like(target), t_diag=t_diag, s=s, t=t)


def lsd_flow_loss(
    flow_net: nn.Module,
    z: torch.Tensor,
    x1: torch.Tensor,
    draws: LSDDraws,
    weighting: TimeWeighting | None,
    *,
    with_distillation: bool,
    p_equal: float = 0.75,
    distill_prob: float = 0.25,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-frame LSD loss [N] for head inputs z [N, dz] and targets x1 [N, D]; plus unweighted metrics.

    `distill_prob` is the fraction of steps on which the caller passes `with_distillation=True`;
    the distillation weight is divided by it so the expected gradient does not depend on it.
    """
    dim = x1.shape[-1]
    x0 = draws.noise

    def head(s: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flow_net(z, s, t, x)

    t_diag = draws.t_diag
    interpolant = t_diag * x1 + (1 - t_diag) * x0
    diag = (head(t_diag, t_diag, interpolant) - (x1 - x0)).square().sum(dim=-1)
    metrics = {"flow_diag": diag.detach().mean()}
    if weighting is not None:
        w = weighting(t_diag, t_diag)
        diag = diag * w.exp() / dim - w
    if not with_distillation:
        return p_equal * diag, metrics

    s, t = draws.s, draws.t
    x_s = s * x1 + (1 - s) * x0
    v_st, dv_dt = torch.func.jvp(head, (s, t, x_s), (torch.zeros_like(s), torch.ones_like(t), torch.zeros_like(x_s)))
    x_t = x_s + (t - s) * v_st
    dx_dt = v_st + (t - s) * dv_dt
    # Frozen copy of the head (and of z) for the target: gradient flows through x_t only.
    frozen = {name: p.detach() for name, p in flow_net.named_parameters()}
    target = torch.func.functional_call(flow_net, frozen, (z.detach(), t, t, x_t))
    distill = (dx_dt - target).square().sum(dim=-1)
    metrics["flow_distill"] = distill.detach().mean()
    if weighting is not None:
        w = weighting(s, t)
        distill = distill * w.exp() / dim - w
    return p_equal * diag + (1 - p_equal) / distill_prob * distill, metrics


def eos_loss(eos_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits: label 1 at the first invalid frame, 0 on valid frames, averaged over both.

    eos_logits, valid: [B, T]. The collator leaves >= 1 padding frame after every clip so that
    even the longest clip has its first invalid frame inside T.
    """
    first_invalid = ~valid & torch.cat([valid[:, :1], valid[:, :-1]], dim=1)
    counted = valid | first_invalid
    per_frame = F.binary_cross_entropy_with_logits(eos_logits, first_invalid.to(eos_logits.dtype), reduction="none")
    return (per_frame * counted).sum() / counted.sum().clamp(min=1)
