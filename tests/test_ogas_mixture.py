"""First-look yields and what they steer: OGAS's proposal mixture and the yield-driven ratio."""

from __future__ import annotations

import io

import pytest
import torch

from nearpole_exp.acquisition.breed import BreedBreeder, BreedConfig
from nearpole_exp.acquisition.history import (
    SOURCE_DESIGN,
    SOURCE_GENERATOR,
    SOURCE_LOCAL,
    SimHistory,
)
from nearpole_exp.acquisition.mixture import ProposalMix
from nearpole_exp.acquisition.ogas import BreederConfig
from nearpole_exp.acquisition.schedule import YieldBreedRatio
from nearpole_exp.acquisition.yields import (
    probability_higher,
    ranks_within_generation,
    source_yields,
)
from nearpole_exp.errors import ConfigError
from tests.test_ogas import UNIT2, corner, difficulty, tell_twice, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def generation(h: SimHistory, g: int, source: torch.Tensor, first: torch.Tensor) -> None:
    """Append one generation whose sims report ``first`` once (their first look)."""
    n = source.numel()
    start = h.size
    h.write(start, torch.rand(n, 2), source != SOURCE_DESIGN, g, torch.zeros(n), source)
    h.update(torch.arange(start, start + n), first)


def sources(n_design: int, n_gen: int, n_local: int) -> torch.Tensor:
    return torch.cat([torch.full((n_design,), SOURCE_DESIGN),
                      torch.full((n_gen,), SOURCE_GENERATOR),
                      torch.full((n_local,), SOURCE_LOCAL)])


def test_first_look_is_the_first_tell_only():
    h = SimHistory(dim=2, ema_alpha=0.3)
    h.write(0, torch.rand(3, 2), torch.tensor([False, True, True]), 0, torch.zeros(3))
    assert h.source[:3].tolist() == [SOURCE_DESIGN, SOURCE_LOCAL, SOURCE_LOCAL]
    h.update(torch.tensor([0, 0, 1]), torch.tensor([1.0, 3.0, 5.0]))
    h.update(torch.tensor([0, 1, 2]), torch.tensor([10.0, 10.0, 7.0]))
    assert h.first[:3].tolist() == [2.0, 5.0, 7.0]  # later tells move the EMA, not the first look
    assert h.signal[0] == pytest.approx(0.7 * 2.0 + 0.3 * 10.0)
    old = h.state_dict()
    del old["first"], old["source"]  # a checkpoint from before these were recorded
    restored = SimHistory(dim=2, ema_alpha=0.3)
    restored.load_state_dict(old)
    assert restored.source[:3].tolist() == [SOURCE_DESIGN, SOURCE_LOCAL, SOURCE_LOCAL]
    assert torch.isnan(restored.first[:3]).all()


def test_ranks_are_taken_within_each_generation():
    h = SimHistory(dim=2, ema_alpha=0.3)
    generation(h, 1, sources(4, 0, 0), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    generation(h, 2, sources(2, 0, 0), torch.tensor([100.0, 50.0]))  # another scale entirely
    ids, ranks = ranks_within_generation(h, torch.tensor([1, 2]))
    assert ids.tolist() == [0, 1, 2, 3, 4, 5]
    assert ranks.tolist() == [0.25, 0.5, 0.75, 1.0, 1.0, 0.5]


@pytest.mark.parametrize(("local_offset", "expect"), [
    (+1.0, "high"),   # local children land where the surrogate is worse: more of them
    (-1.0, "low"),    # the generator's land there: the local share falls to the floor
    (0.0, "even"),    # the same law: no preference
])
def test_adaptive_share_follows_the_better_yield(local_offset, expect):
    gen = torch.Generator().manual_seed(0)
    h = SimHistory(dim=2, ema_alpha=0.3)
    for g in range(1, 5):
        noise = torch.rand(30 + 40 + 40, generator=gen)
        first = noise + torch.cat([torch.zeros(70), torch.full((40,), local_offset)])
        generation(h, g, sources(30, 40, 40), first)
    mix = ProposalMix("adaptive", {"generator": 0.5, "local": 0.5}, floor=0.1, window=3)
    share = mix.update(h)["local"]
    y = source_yields(h, 3)
    assert y["generator"].n == 120 and y["local"].n == 120  # 3 generations × 40
    assert y["design"].n == 90 and y["bred"].n == 240
    if expect == "high":
        assert share == pytest.approx(0.9)
        assert mix.last["yield_local"] > mix.last["yield_generator"] + 0.3
    elif expect == "low":
        assert share == pytest.approx(0.1)
    else:
        assert 0.1 < share < 0.9
    split = mix.split(100)
    assert sum(split.values()) == 100 and abs(split["local"] - 100 * share) <= 1
    other = ProposalMix("adaptive", {"generator": 0.5, "local": 0.5}, floor=0.1, window=3)
    other.load_state_dict(mix.state_dict())
    assert other.shares == mix.shares and other.last == mix.last


def test_fixed_and_generator_modes_keep_their_share():
    h = SimHistory(dim=2, ema_alpha=0.3)
    generation(h, 1, sources(10, 10, 10), torch.rand(30))
    assert ProposalMix("fixed", {"generator": 0.7, "local": 0.3}, 0.1, 3).update(h)["local"] == 0.3
    assert ProposalMix("generator", {"generator": 1.0}, 0.1, 3).update(h) == {"generator": 1.0}
    fresh = ProposalMix("adaptive", {"generator": 0.6, "local": 0.4}, 0.1, 3)
    assert fresh.update(SimHistory(2, 0.3))["local"] == 0.4  # no yields yet


def test_breeder_with_local_proposals_records_sources_and_resumes():
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    b = tiny(proposal_mix="adaptive", end_breed_ratio=0.8, local_share=0.5)
    for _ in range(4):
        tell_twice(b, b.ask(200), gen)
    src = b.history.source[200:800]
    assert (src == SOURCE_LOCAL).any() and (src == SOURCE_GENERATOR).any()
    assert torch.equal(b.history.is_bred[:800], b.history.source[:800] != SOURCE_DESIGN)
    m = b.metrics()
    assert 0.1 <= m["breeder/local_share"] <= 0.9
    assert {"breeder/yield_local", "breeder/yield_generator"} <= set(m)
    local = b.history.unit[:800][b.history.source[:800] == SOURCE_LOCAL]
    assert float(corner(local).float().mean()) > 5 * 0.04  # children of the hard sims
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    c = tiny(proposal_mix="adaptive", end_breed_ratio=0.8, local_share=0.5)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(b.ask(64), c.ask(64))
    assert c.mix.shares == b.mix.shares


def test_a_fixed_share_of_one_breeds_only_local_children():
    b = tiny(proposal_mix="fixed", local_share=1.0, end_breed_ratio=0.5)
    gen = torch.Generator().manual_seed(4)
    tell_twice(b, b.ask(100), gen)
    b.ask(100)
    assert int((b.history.source[100:200] == SOURCE_LOCAL).sum()) == 50
    assert not (b.history.source[100:200] == SOURCE_GENERATOR).any()
    assert torch.isnan(b.history.target[100:200]).all()  # no generator condition was asked for


def test_mix_settings_are_checked():
    with pytest.raises(ConfigError, match="proposal_mix"):
        BreederConfig(proposal_mix="both")
    with pytest.raises(ConfigError, match="local_share"):
        BreederConfig(proposal_mix="generator", local_share=0.3)  # only meaningful with a mixture
    with pytest.raises(ConfigError, match="mix_floor"):
        BreederConfig(proposal_mix="adaptive", mix_floor=0.7)
    with pytest.raises(ConfigError, match="mix_floor"):
        BreederConfig(proposal_mix="fixed", mix_floor=0.2)  # a fixed share has no floor
    with pytest.raises(ConfigError, match="yield_window"):
        BreederConfig(proposal_mix="fixed", adaptive_ratio="off", yield_window=5)  # no yields


@pytest.mark.parametrize(("bred_offset", "expect"), [(+1.0, 0.9), (-1.0, 0.0)])
def test_yield_driven_ratio_breeds_while_bred_points_are_harder(bred_offset, expect):
    gen = torch.Generator().manual_seed(1)
    h = SimHistory(dim=2, ema_alpha=0.3)
    for g in range(1, 4):
        first = torch.rand(100, generator=gen) + torch.cat([torch.zeros(40),
                                                            torch.full((60,), bred_offset)])
        generation(h, g, sources(40, 30, 30), first)
    y = source_yields(h, 3)
    ratio = YieldBreedRatio(0.0, 0.9, window=3)
    assert ratio.value == pytest.approx(0.45)  # no evidence yet: half way
    assert ratio.update(probability_higher(y["bred"], y["design"])) == pytest.approx(expect, abs=1e-3)
    assert probability_higher(y["design"], y["design"]) == pytest.approx(0.5)


def test_breeder_with_yield_driven_ratio_reports_and_resumes():
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    kw = dict(adaptive_ratio="yield", end_breed_ratio=0.9,
              breakpoint=3, proposal_mix="adaptive")
    b = tiny(**kw)
    ratios = []
    for _ in range(4):
        tell_twice(b, b.ask(200), gen)
        ratios.append(b.stats["ratio"])
    assert ratios[0] == 0.0 and ratios[1] == pytest.approx(0.45, abs=0.01)
    # the corner's sims are harder than the design's (difficulty ~1.1 vs 0.1): breed to the top
    assert ratios[3] > 0.8
    m = b.metrics()
    assert m["breeder/yield_bred"] > m["breeder/yield_design"]
    state = b.state_dict()
    c = tiny(**kw)
    c.load_state_dict(state)
    assert c.ratio_control.value == b.ratio_control.value
    with pytest.raises(ConfigError, match="adaptive_ratio"):
        BreederConfig(adaptive_ratio="loss")
    with pytest.raises(ConfigError, match="adaptive_gain"):
        BreederConfig(adaptive_ratio="yield", adaptive_gain=2.0)  # an ESS controller's setting
    assert BreederConfig(adaptive_ratio=True).adaptive_ratio == "ess"  # the former switch
    BreederConfig(adaptive_ratio="yield", learn_sampling_ratio=False)  # no classifier needed


def test_breed_with_the_yield_driven_ratio_breeds_up_to_its_ceiling():
    gen = torch.Generator().manual_seed(2)
    b = BreedBreeder(UNIT2, start=0.0, end=0.9, adaptive_ratio="yield")
    for _ in range(4):
        x = b.ask(200)
        ids = torch.arange(b.n_asked - 200, b.n_asked)
        b.tell(ids, difficulty(x, gen))  # unit box: parameters are unit coordinates
    assert b.records["ratio"][:2] == pytest.approx([0.0, 0.45])
    assert b.records["ratio"][3] > 0.8  # corner children are far harder than design points
    m = b.metrics()
    assert m["breeder/yield_bred"] > m["breeder/yield_design"]
    c = BreedBreeder(UNIT2, start=0.0, end=0.9, adaptive_ratio="yield")
    c.load_state_dict(b.state_dict())
    assert torch.equal(b.ask(50), c.ask(50))
    with pytest.raises(ConfigError, match="breakpoint"):
        BreedConfig(adaptive_ratio="yield", breakpoint=5)
    with pytest.raises(ConfigError, match="adaptive_ratio"):
        BreedConfig(adaptive_ratio="ess")  # Breed has no ratio classifier
    with pytest.raises(ConfigError, match="yield_window"):
        BreedConfig(yield_window=5)  # the ramp measures no yields
