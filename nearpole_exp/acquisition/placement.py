"""Placement diagnostic: how far a breeder's points are from the ideal tilted density.

Where a problem knows its ideal (the analytic landscapes: p* ∝ difficulty, hard regions as
boxes over the first m active axes, or over placement coordinates such as the quantile of the
distance to a hard set that is not a box), each generation's points are compared with it:

- ``tv``: total variation between the points' histogram on a grid over the active axes and the
  ideal's cell masses (``tv_floor``: the same for as many independent draws from p* itself, the
  sampling-noise level at which a perfect breeder sits);
- ``hard_mass`` vs ``ideal_hard_mass``, and the mass per region (``region_mass/<r>``);
- ``hard_tv``: inside each region, the TV between the points there and p* restricted to the
  region, weighted by the regions' ideal masses (how evenly a breeder fills a region, not
  just whether it finds it; ``hard_tv_floor`` its noise level);
- ``regions_found``: the share of regions holding at least half their ideal share of points.
This is what tells "the generator has not learnt the conditional" (low hard mass with a
trained model), "collapse onto one region" (low regions_found) and "piled on a face" (high
hard_tv at the right hard mass) apart.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nearpole_exp.problems.base import IdealPlacement

SUBCELLS = 4
FLOOR_DRAWS = 32


def grid_bins(axes: int) -> int:
    """Cells per axis of the whole-box grid: ~256–512 cells in all, at most 3 axes gridded."""
    return {1: 64, 2: 16, 3: 8}.get(axes, 0)


def cell_masses(ideal: IdealPlacement, lo: Tensor, hi: Tensor, bins: int) -> Tensor:
    """The ideal's mass in each of ``bins``^m cells of the box [lo, hi] (normalised to sum 1):
    its weighted reference points histogrammed where it has them, else p* on a fine mesh."""
    if ideal.reference is not None:
        weights = ideal.reference_weights
        dens = histogram(ideal.reference, lo, hi, bins, weights)
        return dens / dens.sum().clamp_min(1e-300)
    m = ideal.axes
    fine = bins * SUBCELLS
    centres = [lo[i] + (torch.arange(fine, dtype=torch.float64) + 0.5) / fine * (hi[i] - lo[i])
               for i in range(m)]
    mesh = torch.stack(torch.meshgrid(*centres, indexing="ij"), dim=-1).reshape(-1, m)
    points = torch.full((len(mesh), ideal.dim), 0.5, dtype=torch.float64)
    points[:, :m] = mesh
    dens = ideal.density(points).double().reshape([fine] * m)
    for axis in range(m):
        dens = dens.unflatten(axis, (bins, SUBCELLS)).sum(dim=axis + 1)
    dens = dens.flatten()
    return dens / dens.sum().clamp_min(1e-300)


def histogram(coords: Tensor, lo: Tensor, hi: Tensor, bins: int,
              weights: Tensor | None = None) -> Tensor:
    """Counts (or summed ``weights``) of points with placement coordinates ``[n, m]`` in the
    ``bins``^m cells of [lo, hi] (inside only)."""
    m = len(lo)
    x = (coords[:, :m].double() - lo) / (hi - lo)
    inside = ((x >= 0) & (x <= 1)).all(dim=1)
    cells = (x[inside] * bins).long().clamp(0, bins - 1)
    flat = torch.zeros(len(cells), dtype=torch.long)
    for axis in range(m):
        flat = flat * bins + cells[:, axis]
    w = None if weights is None else weights[inside].double()
    return torch.bincount(flat, weights=w, minlength=bins**m).double()


def total_variation(counts: Tensor, masses: Tensor) -> float:
    """½ Σ |counts/n − masses| (1 when there are no counts)."""
    n = float(counts.sum())
    if n == 0:
        return 1.0
    return 0.5 * float((counts / n - masses).abs().sum())


def noise_floor(masses: Tensor, n: int, generator: torch.Generator) -> float:
    """Mean TV of ``n`` independent draws from ``masses`` against ``masses``."""
    if n == 0:
        return 1.0
    values = []
    for _ in range(FLOOR_DRAWS):
        idx = torch.multinomial(masses.float(), n, replacement=True, generator=generator)
        values.append(total_variation(torch.bincount(idx, minlength=len(masses)).double(), masses))
    return sum(values) / len(values)


class PlacementDiagnostic:
    """Scores sets of unit-box points against one problem's :class:`IdealPlacement`."""

    def __init__(self, ideal: IdealPlacement, region_bins: int = 4) -> None:
        self.ideal = ideal
        m = ideal.axes
        self.bins = grid_bins(m)
        self.region_bins = region_bins
        zeros, ones = torch.zeros(m, dtype=torch.float64), torch.ones(m, dtype=torch.float64)
        self.box = (zeros, ones)
        self.masses = cell_masses(ideal, zeros, ones, self.bins) if self.bins else None
        self.region_cells = [cell_masses(ideal, ideal.lows[r].double(), ideal.highs[r].double(),
                                         region_bins) for r in range(len(ideal.lows))]
        self._floors: dict[int, tuple[float, float]] = {}

    def region_of(self, coords: Tensor) -> Tensor:
        """Region index of each point (placement coordinates), −1 outside every hard region."""
        x = coords.double()
        out = torch.full((len(coords),), -1, dtype=torch.long)
        for r, (lo, hi) in enumerate(zip(self.ideal.lows, self.ideal.highs, strict=True)):
            out[((x > lo) & (x < hi)).all(dim=1)] = r
        return out

    def floors(self, n: int) -> tuple[float, float]:
        """(tv_floor, hard_tv_floor) for ``n`` points, cached per n."""
        if n not in self._floors:
            gen = torch.Generator().manual_seed(n)
            tv = noise_floor(self.masses, n, gen) if self.masses is not None else float("nan")
            ideal = self.ideal.region_masses.double()
            share = ideal / ideal.sum()
            hard = sum(float(share[r]) * noise_floor(cells, max(1, round(n * float(ideal[r]))), gen)
                       for r, cells in enumerate(self.region_cells))
            self._floors[n] = (tv, hard)
        return self._floors[n]

    def metrics(self, unit: Tensor, prefix: str = "placement") -> dict[str, float]:
        """The diagnostic of ``unit`` points ``[n, d]`` (unit box) under ``prefix/``."""
        n = len(unit)
        if n == 0:
            return {}
        ideal = self.ideal.region_masses.double()
        coords = self.ideal.coords(unit)
        region = self.region_of(coords)
        shares = torch.stack([(region == r).double().mean() for r in range(len(ideal))])
        out = {f"{prefix}/hard_mass": float(shares.sum()),
               f"{prefix}/ideal_hard_mass": float(ideal.sum()),
               f"{prefix}/regions_found": float((shares >= 0.5 * ideal).double().mean())}
        for r in range(len(ideal)):
            out[f"{prefix}/region_mass/{r}"] = float(shares[r])
            out[f"{prefix}/ideal_region_mass/{r}"] = float(ideal[r])
        if self.masses is not None:
            out[f"{prefix}/tv"] = total_variation(histogram(coords, *self.box, self.bins), self.masses)
        hard_tv = 0.0
        for r, cells in enumerate(self.region_cells):
            inside = coords[region == r]
            counts = histogram(inside, self.ideal.lows[r].double(), self.ideal.highs[r].double(),
                               self.region_bins)
            hard_tv += float(ideal[r] / ideal.sum()) * total_variation(counts, cells)
        out[f"{prefix}/hard_tv"] = hard_tv
        tv_floor, hard_floor = self.floors(n)
        if self.masses is not None:
            out[f"{prefix}/tv_floor"] = tv_floor
        out[f"{prefix}/hard_tv_floor"] = hard_floor
        return out


class PlacementLog:
    """The diagnostic of every generation a run asks for: per-generation metrics, their mean
    over the bred generations (1, 2, …) for the summary, the points for the plot, and state."""

    def __init__(self, ideal: IdealPlacement, bounds: Tensor) -> None:
        self.diagnostic = PlacementDiagnostic(ideal)
        self.bounds = bounds.double()
        # every generation's points in one tensor (a long run keeps two tensors, not two per
        # generation), split by the generation sizes when read
        self._unit = torch.empty(0, bounds.shape[0])
        self._bred = torch.empty(0, dtype=torch.bool)
        self._sizes: list[int] = []
        self.history: list[dict[str, float]] = []

    @property
    def generations(self) -> list[Tensor]:
        """Each generation's points in unit coordinates, in order."""
        return list(self._unit.split(self._sizes)) if self._sizes else []

    @property
    def bred(self) -> list[Tensor]:
        """Each generation's bred-point mask."""
        return list(self._bred.split(self._sizes)) if self._sizes else []

    def record(self, params: Tensor, bred: Tensor | None) -> dict[str, float]:
        """Metrics of one generation (box coordinates ``params``; ``bred`` marks its bred points)."""
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        unit = ((params.detach().cpu().double() - lo) / (hi - lo)).float()
        mask = torch.zeros(len(unit), dtype=torch.bool) if bred is None else bred.cpu().bool()
        self._unit = torch.cat([self._unit, unit])
        self._bred = torch.cat([self._bred, mask])
        self._sizes.append(len(unit))
        out = self.diagnostic.metrics(unit)
        out["placement/generation"] = float(len(self._sizes) - 1)
        if bool(mask.any()):
            out.update(self.diagnostic.metrics(unit[mask], "placement_bred"))
        self.history.append(out)
        return out

    def summary(self) -> dict[str, float]:
        """Mean of each metric over generations ≥ 1 (generation 0 is the design)."""
        later = self.history[1:]
        keys = sorted({k for h in later for k in h if k != "placement/generation"})
        return {k: sum(h[k] for h in later if k in h) / sum(1 for h in later if k in h)
                for k in keys}

    def plot(self, outdir: str) -> list[str]:
        """``placement.png``: each generation's points over the ideal density (first two axes)."""
        from nearpole_exp.acquisition.plots import plot_placement  # matplotlib only when plotting

        return plot_placement(self, outdir)

    def state_dict(self) -> dict[str, object]:
        return {"generations": [g.clone() for g in self.generations],
                "bred": [b.clone() for b in self.bred], "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        generations = list(state["generations"])  # type: ignore[call-overload]
        self._sizes = [len(g) for g in generations]
        if generations:
            self._unit = torch.cat(generations).float()
            self._bred = torch.cat(list(state["bred"])).bool()  # type: ignore[call-overload]
        self.history = [dict(h) for h in state["history"]]  # type: ignore[union-attr]
