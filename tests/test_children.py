"""Children in many dimensions: recombination keeps the children of hard parents in a thin hard
set where Gaussian mutation leaves it; Breed and OGAS draw it, mix it with their other proposals
by first-look yields, record its source and resume exactly."""

from __future__ import annotations

import io

import pytest
import torch

from nearpole_exp.acquisition.breed import BreedBreeder
from nearpole_exp.acquisition.children import recombine
from nearpole_exp.acquisition.history import (
    SOURCE_DESIGN,
    SOURCE_GENERATOR,
    SOURCE_LOCAL,
    SOURCE_RECOMBINATION,
    SimHistory,
)
from nearpole_exp.acquisition.mixture import ProposalMix, probability_best
from nearpole_exp.acquisition.ogas import BreederConfig
from nearpole_exp.acquisition.yields import Yield
from nearpole_exp.errors import ConfigError
from nearpole_exp.problems.landscape_set import SetLandscape
from tests.test_ogas import tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recombined_children_lie_on_the_line_through_their_parents():
    gen = torch.Generator().manual_seed(0)
    a = 0.3 + 0.4 * torch.rand(500, 8, generator=gen)
    b = 0.3 + 0.4 * torch.rand(500, 8, generator=gen)
    child = recombine(a, b, 0.25, gen)
    u = ((child - a) * (b - a)).sum(dim=1) / (b - a).pow(2).sum(dim=1)
    assert torch.allclose(child, a + u[:, None] * (b - a), atol=1e-5)  # collinear (no face reached)
    assert float(u.min()) >= -0.25 - 1e-5 and float(u.max()) <= 1.25 + 1e-5
    assert float(u.min()) < 0 and float(u.max()) > 1  # a little beyond either parent too
    edge = recombine(torch.zeros(100, 3), torch.ones(100, 3), 1.0, gen)
    assert bool(((edge >= 0) & (edge <= 1)).all())  # reflected into the box


def breed_on(problem: SetLandscape, children: str, generations: int = 4, **kw) -> BreedBreeder:
    """A Breed run on a set landscape whose signal is its difficulty plus noise."""
    b = BreedBreeder(problem.bounds, children=children, start=0.7, end=0.7, **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(generations):
        x = b.ask(128)
        ids = torch.arange(b.n_asked - 128, b.n_asked)
        b.tell(ids, problem.difficulty(x.double()).float() + 0.1 * torch.rand(128, generator=gen))
    return b


def hard_share(problem: SetLandscape, b: BreedBreeder, source: int) -> float:
    h = b.history
    n = h.size
    mask = (h.source[:n] == source) & (h.generation[:n] >= 2)
    return float(problem.hard_region_mask(h.unit[:n][mask].double()).double().mean())


@pytest.mark.parametrize("dim", [16, 64])
def test_recombination_keeps_the_children_of_hard_parents_in_a_thin_slab(dim):
    """The slab is 0.04 thick: Gaussian children (σ = 0.1 per axis, reflected at the faces) of
    its sims mostly leave it, children on the line between two of its sims stay."""
    problem = SetLandscape(dim=dim)
    torch.manual_seed(2)
    recombined = hard_share(problem, breed_on(problem, "recombination", fitness_power=4.0),
                            SOURCE_RECOMBINATION)
    torch.manual_seed(2)
    gaussian = hard_share(problem, breed_on(problem, "gaussian", fitness_power=4.0, oob="reflect"),
                          SOURCE_LOCAL)
    assert recombined > 0.85 and gaussian < 0.6


def test_breed_mixes_its_children_by_yield_and_resumes_exactly():
    problem = SetLandscape(dim=16)
    torch.manual_seed(3)
    b = breed_on(problem, "adaptive", generations=6, fitness_power=4.0)
    m = b.metrics()
    assert m["breeder/recombination_share"] > m["breeder/local_share"]  # its sims were harder
    assert m["breeder/yield_recombination"] > m["breeder/yield_local"]
    src = b.history.source[: b.history.size]
    assert {SOURCE_DESIGN, SOURCE_LOCAL, SOURCE_RECOMBINATION} <= set(src.tolist())
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    c = BreedBreeder(problem.bounds, children="adaptive", start=0.7, end=0.7, fitness_power=4.0)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert c.mix.shares == b.mix.shares
    assert torch.equal(b.ask(64), c.ask(64))


def test_probability_best_ranks_three_proposals_and_is_reproducible():
    y = {"generator": Yield(0.40, 0.02, 60), "local": Yield(0.55, 0.02, 60),
         "recombination": Yield(0.70, 0.02, 60)}
    p = probability_best(y, seed=7)
    assert p["recombination"] > 0.99 and abs(sum(p.values()) - 1) < 1e-9
    assert p == probability_best(y, seed=7)
    close = probability_best({**y, "local": Yield(0.70, 0.02, 60)}, seed=7)
    assert 0.4 < close["local"] < 0.6


def test_a_mixture_of_three_gives_the_best_proposal_all_but_the_floors():
    h = SimHistory(dim=2, ema_alpha=0.3)
    gen = torch.Generator().manual_seed(0)
    codes = torch.tensor([SOURCE_DESIGN, SOURCE_GENERATOR, SOURCE_LOCAL, SOURCE_RECOMBINATION])
    for g in range(1, 5):
        source = codes.repeat_interleave(30)
        first = torch.rand(120, generator=gen) + (source == SOURCE_RECOMBINATION).float()
        start = h.size
        h.write(start, torch.rand(120, 2, generator=gen), source != SOURCE_DESIGN, g,
                torch.zeros(120), source)
        h.update(torch.arange(start, start + 120), first)
    mix = ProposalMix("adaptive", {"generator": 0.4, "local": 0.3, "recombination": 0.3},
                      floor=0.05, window=3)
    shares = mix.update(h)
    assert shares["recombination"] == pytest.approx(0.9, abs=0.01)
    assert shares["generator"] == pytest.approx(0.05, abs=0.01)
    assert sum(mix.split(101).values()) == 101


def test_ogas_draws_recombinations_in_their_fixed_share_and_resumes():
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(4)
    b = tiny(proposal_mix="fixed", local_share=0.25, recombination_share=0.5, end_breed_ratio=0.8)
    from tests.test_ogas import tell_twice

    tell_twice(b, b.ask(100), gen)
    b.ask(100)
    src = b.history.source[100:200]
    assert int((src == SOURCE_RECOMBINATION).sum()) == 40 and int((src == SOURCE_LOCAL).sum()) == 20
    assert int((src == SOURCE_GENERATOR).sum()) == 20
    assert torch.isnan(b.history.target[100:200][src == SOURCE_RECOMBINATION]).all()
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    c = tiny(proposal_mix="fixed", local_share=0.25, recombination_share=0.5, end_breed_ratio=0.8)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(b.ask(50), c.ask(50))


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"proposal_mix": "fixed", "local_share": 0.6, "recombination_share": 0.5}, "recombination_share"),
    ({"proposal_mix": "adaptive", "local_share": 0.3, "recombination_share": 0.3, "mix_floor": 0.4},
     "mix_floor"),
    ({"proposal_mix": "fixed", "recombination_spread": 2.0}, "recombination_spread"),
    ({"proposal_mix": "generator", "recombination_share": 0.3}, "recombination_share"),
])
def test_ogas_recombination_settings_that_cannot_hold_are_refused(kwargs, key):
    with pytest.raises(ConfigError) as err:
        BreederConfig(**kwargs)
    assert err.value.key == key


@pytest.mark.parametrize(("kwargs", "key"), [({"children": "crossover"}, "children"),
                                             ({"mix_floor": 0.2}, "mix_floor"),
                                             ({"children": "adaptive", "mix_floor": 0.7}, "mix_floor")])
def test_breed_children_settings_that_cannot_hold_are_refused(kwargs, key):
    with pytest.raises(ConfigError) as err:
        BreedBreeder(torch.tensor([[0.0, 1.0]] * 2), **kwargs)
    assert err.value.key == key
