"""The space-filling designs: better spread than i.i.d. points by the centred discrepancy, in
every dimension the breeders use, and streams that resume where they stopped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import qmc

from nearpole_exp.designs import DESIGNS, UnitDesign


def _mean_discrepancy(design: str, dim: int, n: int, replicates: int = 8) -> float:
    values = []
    for rep in range(replicates):
        points = UnitDesign(design, dim, torch.Generator().manual_seed(rep)).draw(n)
        values.append(qmc.discrepancy(points.double().numpy()))
    return float(np.mean(values))


@pytest.mark.parametrize(("dim", "n"), [(2, 64), (8, 256), (16, 64)])
def test_quasi_random_designs_spread_better_than_iid_points(dim: int, n: int) -> None:
    iid = _mean_discrepancy("uniform", dim, n)
    # at d = 16, n = 64 a shifted unscrambled Halton was 1.3x worse than i.i.d.
    assert _mean_discrepancy("halton", dim, n) < (0.8 if dim == 16 else 0.2) * iid
    assert _mean_discrepancy("sobol", dim, n) < (0.8 if dim == 16 else 0.2) * iid
    assert _mean_discrepancy("lhs", dim, n) < 0.9 * iid


def test_a_latin_hypercube_has_one_point_per_stratum_on_every_axis() -> None:
    points = UnitDesign("lhs", 5, torch.Generator().manual_seed(0)).draw(40)
    strata = torch.floor(points * 40).long()
    for axis in range(5):
        assert sorted(strata[:, axis].tolist()) == list(range(40))


@pytest.mark.parametrize("design", DESIGNS)
def test_a_stream_resumed_from_its_state_continues_identically(design: str) -> None:
    stream = UnitDesign(design, 3, torch.Generator().manual_seed(7))
    stream.draw(10)
    state = stream.state_dict()
    expected = stream.draw(13)
    resumed = UnitDesign(design, 3, torch.Generator().manual_seed(7))
    resumed.load_state_dict(state)
    assert torch.equal(resumed.draw(13), expected)


def test_a_halton_stream_is_one_sequence_however_it_is_drawn() -> None:
    whole = UnitDesign("halton", 4, torch.Generator().manual_seed(1)).draw(30)
    parts = UnitDesign("halton", 4, torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([parts.draw(7), parts.draw(23)]), whole)
    other = UnitDesign("halton", 4, torch.Generator().manual_seed(2)).draw(30)
    assert not torch.equal(other, whole)  # the seed scrambles
