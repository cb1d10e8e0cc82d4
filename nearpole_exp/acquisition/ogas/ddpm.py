"""Conditional DDPM over normalised simulation parameters, with classifier-free guidance.

An MLP denoiser ε_θ(x_t, t, c) (time and scalar-condition embeddings, a learned null token for
the unconditional branch), a cosine or linear β schedule, a per-sample-weighted training step,
ancestral DDPM and few-step DDIM samplers, and an EMA copy of the weights used for generation.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from nearpole_exp.acquisition.ogas.config import DDPMConfig
from nearpole_exp.optim.adamw import AdamW

LOGIT_SCALE = math.pi / math.sqrt(3.0)  # std of the logistic law: logit(U(0,1)) / this has std 1


def encode(unit: Tensor, parametrisation: str, eps: float) -> Tensor:
    """Unit-cube points → diffusion space (``box``, ``mirror``: 2u−1; ``logit``: logit(u) / LOGIT_SCALE)."""
    if parametrisation in ("box", "mirror"):
        return 2.0 * unit - 1.0
    return torch.logit(unit.clamp(eps, 1.0 - eps)) / LOGIT_SCALE


def decode(x: Tensor, parametrisation: str) -> Tensor:
    """Diffusion space → unit cube (``logit`` and ``mirror`` land inside [0, 1] by construction)."""
    if parametrisation == "box":
        return (x + 1.0) / 2.0
    if parametrisation == "mirror":
        return (fold(x) + 1.0) / 2.0
    return torch.sigmoid(x * LOGIT_SCALE)


def fold(x: Tensor) -> Tensor:
    """Reflect coordinates in [−3, 3] back into [−1, 1] across the face they crossed."""
    y = torch.where(x < -1.0, -2.0 - x, x)
    return torch.where(y > 1.0, 2.0 - y, y).clamp(-1.0, 1.0)


def mirror_augment(x: Tensor, margin: float, generator: torch.Generator) -> Tensor:
    """Reflect each coordinate of x ∈ [−1, 1] across its nearest face with probability
    ½·max(0, 1 − d/margin), d the distance to that face.

    The augmented law is continuous across the faces (½ p on both sides) and ``fold`` maps it
    back to the data law exactly, so a DDPM trained on it has no boundary to smooth over: it
    neither piles points onto the faces (the logit map's stretch) nor thins them there (box).
    """
    p = 0.5 * (1.0 - (1.0 - x.abs()) / margin).clamp_min(0.0)
    flip = torch.rand(x.shape, generator=generator, device=x.device) < p
    return torch.where(flip, 2.0 * torch.sign(x) - x, x)


def data_limit(parametrisation: str, eps: float, margin: float = 0.0) -> float:
    """Largest |x| of encoded (and, for ``mirror``, reflected) data, used to clip x̂0 while sampling."""
    if parametrisation == "box":
        return 1.0
    if parametrisation == "mirror":
        return 1.0 + margin
    return math.log((1.0 - eps) / eps) / LOGIT_SCALE


def make_betas(kind: str, timesteps: int) -> Tensor:
    """β_1..β_T: ``linear`` (DDPM, rescaled to T) or ``cosine`` (Nichol & Dhariwal, clipped)."""
    if kind == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), timesteps,
                              dtype=torch.float64)
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


class NoiseSchedule:
    """Precomputed ᾱ_t and posterior coefficients for t = 0..T−1 (float32)."""

    def __init__(self, kind: str, timesteps: int, device: torch.device) -> None:
        betas = make_betas(kind, timesteps)
        alpha_bar = torch.cumprod(1 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.timesteps = timesteps
        self.alpha_bar = alpha_bar.float().to(device)
        self.alpha_bar_prev = prev.float().to(device)
        self.post_var = (betas * (1 - prev) / (1 - alpha_bar)).float().to(device)
        self.post_c0 = (betas * prev.sqrt() / (1 - alpha_bar)).float().to(device)
        self.post_ct = ((1 - prev) * (1 - betas).sqrt() / (1 - alpha_bar)).float().to(device)


def sinusoidal(t: Tensor, dim: int) -> Tensor:
    """Transformer-style sinusoidal embedding of (float) timesteps ``t`` [n] → [n, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class Block(nn.Module):
    """Pre-norm residual MLP block; the embedding enters as an additive projected bias."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.lin1 = nn.Linear(width, width)
        self.emb = nn.Linear(width, width)
        self.lin2 = nn.Linear(width, width)

    def forward(self, h: Tensor, emb_proj: Tensor) -> Tensor:
        return h + self.lin2(nn.functional.silu(self.lin1(self.norm(h)) + emb_proj))


class Denoiser(nn.Module):
    """ε_θ(x_t, t, c): an MLP with time and scalar-condition embeddings and a null-condition token."""

    N_FREQ = 4

    def __init__(self, dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.dim = dim
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.cond_mlp = nn.Sequential(nn.Linear(1 + 2 * self.N_FREQ, width), nn.SiLU(),
                                      nn.Linear(width, width))
        self.null = nn.Parameter(torch.zeros(width))
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed_time(self, t: Tensor) -> Tensor:
        return self.time_mlp(sinusoidal(t, self.width))

    def embed_condition(self, c: Tensor, null_mask: Tensor | None = None) -> Tensor:
        """Embedding of conditions ``c`` [n]; rows with ``null_mask`` get the null token."""
        freqs = math.pi * 2.0 ** torch.arange(self.N_FREQ, device=c.device)
        args = c[:, None] * freqs[None]
        feats = torch.cat([c[:, None], torch.sin(args), torch.cos(args)], dim=1)
        emb = self.cond_mlp(feats)
        if null_mask is not None:
            emb = torch.where(null_mask[:, None], self.null.expand_as(emb), emb)
        return emb

    def project(self, emb: Tensor, bias: bool) -> list[Tensor]:
        """Each block's projection of an embedding (linear, so time and condition add up)."""
        b = [blk.emb.bias if bias else None for blk in self.blocks]
        return [nn.functional.linear(emb, blk.emb.weight, bb) for blk, bb in zip(self.blocks, b, strict=True)]

    def denoise(self, x: Tensor, projs: list[Tensor]) -> Tensor:
        """ε prediction from x_t and per-block projected embeddings."""
        h = self.inp(x)
        for blk, proj in zip(self.blocks, projs, strict=True):
            h = blk(h, proj)
        return self.out(nn.functional.silu(self.out_norm(h)))

    def forward(self, x: Tensor, t: Tensor, c: Tensor, null_mask: Tensor | None = None) -> Tensor:
        emb = self.embed_time(t) + self.embed_condition(c, null_mask)
        return self.denoise(x, self.project(emb, bias=True))


class GuidedEps:
    """ε̂ = ε_∅ + s·(ε_c − ε_∅) with condition projections computed once per sampling run."""

    def __init__(self, model: Denoiser, cond: Tensor, guidance: float) -> None:
        self.model = model
        self.guidance = float(guidance)
        self.cond_proj = model.project(model.embed_condition(cond), bias=True)
        null = model.null[None]
        self.null_proj = model.project(null, bias=True)

    def __call__(self, x: Tensor, t: int) -> Tensor:
        t_vec = torch.full((1,), t, device=x.device, dtype=torch.long)
        time_proj = self.model.project(self.model.embed_time(t_vec), bias=False)
        s = self.guidance
        eps_c = eps_u = None
        if s != 0.0:
            eps_c = self.model.denoise(x, [c + tp for c, tp in zip(self.cond_proj, time_proj, strict=True)])
        if s != 1.0:
            eps_u = self.model.denoise(x, [u + tp for u, tp in zip(self.null_proj, time_proj, strict=True)])
        if eps_c is None:
            return eps_u  # type: ignore[return-value]
        if eps_u is None:
            return eps_c
        return eps_u + s * (eps_c - eps_u)


@torch.no_grad()
def sample_ddpm(model: Denoiser, sched: NoiseSchedule, cond: Tensor, guidance: float,
                x_max: float, generator: torch.Generator) -> Tensor:
    """Ancestral sampling over all T steps; x̂0 is clipped to ±``x_max`` each step."""
    eps_fn = GuidedEps(model, cond, guidance)
    x = torch.randn(cond.shape[0], model.dim, generator=generator, device=cond.device)
    for t in range(sched.timesteps - 1, -1, -1):
        eps = eps_fn(x, t)
        ab = sched.alpha_bar[t]
        x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-x_max, x_max)
        x = sched.post_c0[t] * x0 + sched.post_ct[t] * x
        if t > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            x = x + sched.post_var[t].sqrt() * noise
    return x


@torch.no_grad()
def sample_ddim(model: Denoiser, sched: NoiseSchedule, cond: Tensor, guidance: float,
                x_max: float, steps: int, eta: float, generator: torch.Generator) -> Tensor:
    """DDIM over ``steps`` evenly spaced timesteps (η = 0: deterministic given the start noise)."""
    eps_fn = GuidedEps(model, cond, guidance)
    x = torch.randn(cond.shape[0], model.dim, generator=generator, device=cond.device)
    ts = torch.linspace(sched.timesteps - 1, 0, steps).round().long().unique_consecutive()
    ts_list = ts.tolist()
    for i, t in enumerate(ts_list):
        eps = eps_fn(x, t)
        ab = sched.alpha_bar[t]
        ab_prev = sched.alpha_bar[ts_list[i + 1]] if i + 1 < len(ts_list) else ab.new_ones(())
        x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-x_max, x_max)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp_min(0).sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0 and i + 1 < len(ts_list):
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device)
    return x


class ConditionalDDPM:
    """Denoiser + AdamW + EMA copy + schedule; weighted training steps and guided generation."""

    def __init__(self, dim: int, config: DDPMConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.model = Denoiser(dim, config.model_dim, config.depth).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        # foreach kernels: on the CPU torch defaults to one kernel per tensor, and this small MLP's
        # step is dominated by that per-tensor overhead (and the GIL it holds); the project's
        # AdamW, so the trainer thread does not import torch._dynamo (1 s of CPU) on its first step
        self.optimizer = AdamW(self.model.parameters(), lr=config.lr,
                               weight_decay=config.weight_decay, foreach=True)
        self._params = list(self.model.parameters())
        self._ema_params = list(self.ema.parameters())
        self.schedule = NoiseSchedule(config.beta_schedule, config.timesteps, self.device)
        limit = data_limit(config.parametrisation, config.logit_eps, config.mirror_margin)
        # clip x̂0 to the data range (standard DDPM practice); without it keep a loose numerical
        # guard, since few-step DDIM divides by √ᾱ_T ≈ 5e-4 on its first step
        self.x_max = limit if config.clip_denoised else 3.0 * limit
        self.steps = 0

    def encode(self, unit: Tensor) -> Tensor:
        return encode(unit, self.config.parametrisation, self.config.logit_eps)

    def decode(self, x: Tensor) -> Tensor:
        return decode(x, self.config.parametrisation)

    def loss(self, unit: Tensor, cond: Tensor, weights: Tensor | None,
             generator: torch.Generator) -> Tensor:
        """Σ w_j ‖ε − ε_θ(x_t, t, c_j)‖² / Σ w_j with random t, noise and condition dropout."""
        x0 = self.encode(unit.to(self.device))
        if self.config.parametrisation == "mirror":
            x0 = mirror_augment(x0, self.config.mirror_margin, generator)
        cond = cond.to(self.device)
        n = x0.shape[0]
        t = torch.randint(0, self.config.timesteps, (n,), generator=generator, device=self.device)
        noise = torch.randn(x0.shape, generator=generator, device=self.device)
        ab = self.schedule.alpha_bar[t][:, None]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        drop = torch.rand(n, generator=generator, device=self.device) < self.config.cond_drop_prob
        per_sample = ((self.model(x_t, t, cond, drop) - noise) ** 2).mean(dim=1)
        if weights is None:
            return per_sample.mean()
        w = weights.to(self.device)
        return (w * per_sample).sum() / w.sum().clamp_min(1e-12)

    def train_step(self, unit: Tensor, cond: Tensor, weights: Tensor | None,
                   generator: torch.Generator) -> float:
        """One optimiser step on a weighted batch, then an EMA update; returns the loss."""
        self.model.train()
        loss = self.loss(unit, cond, weights, generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self._params, self.config.grad_clip, foreach=True)
        self.optimizer.step()
        self.steps += 1
        self.update_ema()
        return float(loss.detach())

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema ← d·ema + (1−d)·θ with warm-up d = min(decay, (1+n)/(10+n))."""
        d = min(self.config.ema_decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self._ema_params, self._params, 1.0 - d)

    @torch.no_grad()
    def snapshot(self, into: Denoiser | None = None) -> Denoiser:
        """A frozen copy of the EMA weights (copied into ``into`` when given) for generation."""
        if into is None:
            return copy.deepcopy(self.ema).eval()
        for p_dst, p_src in zip(into.parameters(), self.ema.parameters(), strict=True):
            p_dst.copy_(p_src)
        return into.eval()

    @torch.no_grad()
    def generate(self, cond: Tensor, generator: torch.Generator,
                 model: Denoiser | None = None) -> Tensor:
        """Samples in diffusion space for conditions ``cond`` [n] (EMA weights by default)."""
        model = self.ema if model is None else model
        model.eval()
        cfg = self.config
        cond = cond.to(self.device, torch.float32)
        if cond.shape[0] == 0:
            return torch.empty(0, model.dim, device=self.device)
        if cfg.sampler == "ddpm":
            return sample_ddpm(model, self.schedule, cond, cfg.guidance_scale, self.x_max,
                               generator)
        return sample_ddim(model, self.schedule, cond, cfg.guidance_scale, self.x_max,
                           cfg.sample_steps, cfg.ddim_eta, generator)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
