"""The conditional DDPM: schedules, parametrisations, conditional learning, weights, EMA, state."""

from __future__ import annotations

import io

import pytest
import torch

from nearpole_exp.acquisition.ogas.config import DDPMConfig
from nearpole_exp.acquisition.ogas.ddpm import (
    ConditionalDDPM,
    decode,
    encode,
    fold,
    make_betas,
    mirror_augment,
)
from nearpole_exp.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> DDPMConfig:
    base = dict(model_dim=64, depth=2, timesteps=50, lr=2e-3, ema_decay=0.9)
    base.update(kw)
    if base.get("sampler") == "ddim":
        base.setdefault("sample_steps", 10)
    return DDPMConfig(**base)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_beta_schedules_are_valid(kind):
    betas = make_betas(kind, 100)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert betas.shape == (100,)
    assert bool((betas > 0).all()) and bool((betas < 1).all())
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all())
    assert alpha_bar[0] > 0.99
    assert alpha_bar[-1] < 0.01


def test_cosine_schedule_midpoint():
    alpha_bar = torch.cumprod(1 - make_betas("cosine", 1000), 0)
    # ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2) / f(0): about one half at t = T/2
    assert abs(float(alpha_bar[499]) - 0.5) < 0.02


@pytest.mark.parametrize("param", ["box", "logit", "mirror"])
def test_encode_decode_round_trip(param):
    u = torch.rand(1000, 3, generator=torch.Generator().manual_seed(0)) * 0.998 + 0.001
    back = decode(encode(u, param, 1e-4), param)
    assert torch.allclose(back, u, atol=1e-5)


def test_logit_decode_is_inside_for_any_input():
    x = torch.tensor([[-1e4, -50.0, 0.0, 50.0, 1e4]])
    u = decode(x, "logit")
    assert bool(((u >= 0) & (u <= 1)).all())
    assert decode(torch.tensor([[3.0]]), "box").item() == 2.0  # box decoding can leave [0, 1]


def test_mirror_augmentation_folds_back_and_is_continuous_across_the_faces():
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(400_000, 2, generator=gen) - 1
    aug = mirror_augment(x, 0.5, gen)
    assert torch.equal(fold(aug), x)  # folding gives back the data exactly
    assert float(aug.abs().max()) <= 1.5
    # a coordinate flips with probability ½(1 − d/0.5) within 0.5 of a face: ⅛ of them overall
    assert abs(float((aug != x).float().mean()) - 0.125) < 0.003
    # density p(1 − r) just inside a face and p·r just outside: both → p/2 at the face
    # (p = ½ per unit length here; band means of 1 − r and r over 0.05: 0.525 and 0.475)
    inside = float(((aug[:, 0] > 0.95) & (aug[:, 0] <= 1.0)).float().mean())
    outside = float(((aug[:, 0] > 1.0) & (aug[:, 0] <= 1.05)).float().mean())
    assert inside == pytest.approx(0.5 * 0.05 * 0.525, rel=0.03)
    assert outside == pytest.approx(0.5 * 0.05 * 0.475, rel=0.03)
    assert decode(torch.tensor([[1.2, -1.5, 0.3]]), "mirror")[0].tolist() == pytest.approx([0.9, 0.25, 0.65])


def test_mirror_parametrisation_covers_a_face_without_piling_onto_it():
    """Data uniform on [0.5, 1]²: the generated points stay inside and the band along the face
    holds about its share (0.2 of the data lies within 0.1 of x = 1)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ConditionalDDPM(2, tiny(guidance_scale=1.0, parametrisation="mirror", timesteps=100,
                                    ema_decay=0.99, lr=1e-3))
    unit = 0.5 + 0.5 * torch.rand(8192, 2, generator=gen)
    cond = torch.zeros(8192)
    for _ in range(800):
        idx = torch.randint(0, 8192, (128,), generator=gen)
        model.train_step(unit[idx], cond[idx], None, gen)
    out = model.decode(model.generate(torch.zeros(2000), gen))
    assert bool(((out >= 0) & (out <= 1)).all())
    assert float((out > 0.45).all(dim=1).float().mean()) > 0.9
    band = float((out[:, 0] > 0.9).float().mean())
    assert 0.13 < band < 0.3, band


def _two_clusters(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition 0 → points near 0.25, condition 1 → near 0.75 (2-D, unit cube)."""
    c = (torch.rand(n, generator=gen) < 0.5).float()
    centre = 0.25 + 0.5 * c[:, None]
    unit = (centre + 0.05 * torch.randn(n, 2, generator=gen)).clamp(0.01, 0.99)
    return unit, c


@pytest.fixture(scope="module")
def conditional_model() -> ConditionalDDPM:
    """A tiny DDPM trained on the two-cluster conditional law."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ConditionalDDPM(2, tiny(guidance_scale=1.5))
    unit, c = _two_clusters(4096, gen)
    for _ in range(500):
        idx = torch.randint(0, 4096, (128,), generator=gen)
        model.train_step(unit[idx], c[idx], None, gen)
    return model


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_ddpm_learns_the_conditional_distribution(conditional_model, sampler):
    model = conditional_model
    model.config.sampler = sampler
    gen = torch.Generator().manual_seed(7)
    for target, centre in ((0.0, 0.25), (1.0, 0.75)):
        out = model.decode(model.generate(torch.full((400,), target), gen))
        assert torch.allclose(out.mean(0), torch.full((2,), centre), atol=0.06), out.mean(0)
        near = ((out - centre).abs() < 0.15).all(dim=1).float().mean()
        assert near > 0.85


def test_zero_weights_remove_samples_from_the_learned_law():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    model = ConditionalDDPM(2, tiny(guidance_scale=1.0))
    unit, c = _two_clusters(4096, gen)
    weights = c.clone()  # only the cluster near 0.75 counts
    zeros = torch.zeros(4096)  # one condition for all: the weights alone tell them apart
    for _ in range(400):
        idx = torch.randint(0, 4096, (128,), generator=gen)
        model.train_step(unit[idx], zeros[idx], weights[idx], gen)
    out = model.decode(model.generate(torch.zeros(400), gen))
    assert float(((out - 0.75).abs() < 0.15).all(dim=1).float().mean()) > 0.85


def test_ema_lags_the_weights_and_snapshot_is_a_copy():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    model = ConditionalDDPM(2, tiny(ema_decay=0.99))
    unit, c = _two_clusters(256, gen)
    for _ in range(30):
        model.train_step(unit[:64], c[:64], None, gen)
    w = model.model.inp.weight
    w_ema = model.ema.inp.weight
    assert not torch.allclose(w, w_ema)
    frozen = model.snapshot()
    before = frozen.inp.weight.clone()
    model.train_step(unit[:64], c[:64], None, gen)
    assert torch.equal(frozen.inp.weight, before)
    assert not torch.equal(model.ema.inp.weight, before)


def test_state_round_trip_gives_identical_samples():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    a = ConditionalDDPM(2, tiny())
    unit, c = _two_clusters(256, gen)
    for _ in range(20):
        a.train_step(unit[:64], c[:64], None, gen)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = ConditionalDDPM(2, tiny())
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert b.steps == 20
    cond = torch.rand(50, generator=gen)
    xa = a.generate(cond, torch.Generator().manual_seed(9))
    xb = b.generate(cond, torch.Generator().manual_seed(9))
    assert torch.equal(xa, xb)
    la = a.train_step(unit[:64], c[:64], None, torch.Generator().manual_seed(5))
    lb = b.train_step(unit[:64], c[:64], None, torch.Generator().manual_seed(5))
    assert la == lb


def test_ddpm_config_validation_names_the_field():
    with pytest.raises(ConfigError) as err:
        DDPMConfig(sampler="euler")
    assert err.value.key == "sampler"
    with pytest.raises(ConfigError) as err:
        DDPMConfig(sampler="ddim", sample_steps=200, timesteps=100)
    assert err.value.key == "sample_steps"
    with pytest.raises(ConfigError) as err:
        DDPMConfig(parametrisation="tanh")
    assert err.value.key == "parametrisation"
    with pytest.raises(ConfigError) as err:
        DDPMConfig(mirror_margin=1.5)
    assert err.value.key == "mirror_margin"
    with pytest.raises(ConfigError, match="only with parametrisation=mirror") as err:
        DDPMConfig(mirror_margin=0.3)  # logit: the margin would be ignored
    assert err.value.key == "mirror_margin"
    with pytest.raises(ConfigError, match="only with parametrisation=logit") as err:
        DDPMConfig(parametrisation="box", logit_eps=1e-3)
    assert err.value.key == "logit_eps"
    assert DDPMConfig(parametrisation="mirror", mirror_margin=0.3).mirror_margin == 0.3
