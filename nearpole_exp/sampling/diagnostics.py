"""Sampler diagnostics: per-batch statistics, one aligned record per round, JSONL export.

Per batch, :meth:`DiagnosticMonitor.update_batch` notes the batch; its statistics are computed
for all of a round's batches at once, on their device, when the round ends. Per round,
:meth:`DiagnosticMonitor.end_round` returns every key of :data:`RECORD_KEYS` (NaN where nothing
was given that round, never forward-filled), keeps the record in a bounded in-memory history
and, with an export path, appends it as one JSON line (schema version included, NaN written as
null) to that file. Distance buckets B0…B4 and the near-pole ratio use the problem's distance
when given, else |Q|.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.metrics import BUCKET_EDGES, bucket_index

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
N_BUCKETS = len(BUCKET_EDGES) - 1
RECORD_KEYS = (
    "sampler/q_min",
    "sampler/q_min_batch",
    "sampler/q_min_batch_mean",
    "sampler/q_mean_abs",
    "sampler/near_pole_ratio",
    "sampler/diversity",
    "sampler/ess",
    "sampler/ess_fraction",
    "sampler/weight_max",
    "sampler/loss",
    *(f"sampler/bucket_count/B{b}" for b in range(N_BUCKETS)),
    "sampler/grad_norm_near",
    "sampler/grad_norm_far",
    "sampler/grad_ratio",
)
_SUMS = ("q_sum", "q_count", "q_min", "q_min_batch_sum", "q_batches", "near", "near_total",
         "ess_sum", "ess_frac_sum", "w_batches", "w_max", "loss_sum", "loss_count",
         "grad_near_sum", "grad_near_count", "grad_far_sum", "grad_far_count")


@dataclass
class DiagnosticConfig:
    """Thresholds and buffer sizes of :class:`DiagnosticMonitor`."""

    near_pole_threshold: float = 1e-2
    max_history: int = 1000
    histogram_size: int = 65536
    max_round_indices: int = 1_000_000
    snapshot_every: int = 0
    q_min_warning: float = 0.0
    gradient_every: int = 50

    def __post_init__(self) -> None:
        check(self.near_pole_threshold > 0, "near_pole_threshold", "must be > 0")
        check(self.max_history >= 1, "max_history", "must be >= 1")
        check(self.histogram_size >= 1, "histogram_size", "must be >= 1")
        check(self.max_round_indices >= 1, "max_round_indices", "must be >= 1")
        check(self.snapshot_every >= 0, "snapshot_every", "must be >= 0 (0 disables)")
        check(self.q_min_warning >= 0, "q_min_warning", "must be >= 0 (0 disables)")
        check(self.gradient_every >= 0, "gradient_every", "must be >= 0 (0 disables)")


#: noted batch elements at which the monitor accumulates before the round ends (bounds memory)
FLUSH_ELEMENTS = 1 << 22


def _flat(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().reshape(-1)


def _segments(parts: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The parts concatenated, and each element's part index."""
    flat = torch.cat(parts)
    sizes = torch.tensor([t.numel() for t in parts], device=flat.device)
    return flat, torch.repeat_interleave(torch.arange(len(parts), device=flat.device), sizes)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class DiagnosticMonitor:
    """Accumulates batch statistics and emits one aligned record per round.

    ``export_path``: JSONL file appended to (never rewritten), None for no file;
    ``snapshot_dir``: where every ``snapshot_every``-th round writes
    ``sampled_q_round{r:06d}.npz`` (default: ``<export_path dir>/diagnostics_snapshots``).
    """

    config_class = DiagnosticConfig  # the schema of its config group option (config.py)
    #: the batch's |Q| is wanted with each batch
    wants_q = True

    def __init__(self, config: DiagnosticConfig | None = None, *, export_path: str | None = None,
                 snapshot_dir: str | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or DiagnosticConfig(), **overrides)
        self.path = export_path
        if snapshot_dir is None and export_path is not None:
            snapshot_dir = os.path.join(os.path.dirname(export_path), "diagnostics_snapshots")
        self.snapshot_dir = snapshot_dir
        self.history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self.config.max_history)
        self.q_min_global = math.inf
        self._hist: Tensor | None = None
        self._hist_pos = 0
        self._hist_filled = 0
        self._reset_round()

    def gradient_due(self, step: int) -> bool:
        """Whether the loop should measure near/far gradient norms at ``step`` (every
        ``gradient_every`` steps; 0 never)."""
        every = self.config.gradient_every
        return bool(every) and step % every == 0

    @property
    def near_threshold(self) -> float:
        """Distance (or |Q|) below which a sample counts as near a pole."""
        return self.config.near_pole_threshold

    # -- accumulation ----------------------------------------------------------------------------
    def _reset_round(self) -> None:
        self._acc: dict[str, Tensor | float] = dict.fromkeys(_SUMS, 0.0)
        self._acc["q_min"] = math.inf
        self._acc["w_max"] = -math.inf
        self._buckets: Tensor | float = 0.0
        self._idx: list[Tensor] = []
        self._round_q: list[Tensor] = []
        self._n_idx = 0
        self._n_round_q = 0
        self._last_batch_q_min: Tensor | float = math.nan
        self._last_step: int | None = None
        self._batches = 0
        self._pending: list[tuple[Any, ...]] = []
        self._pending_elements = 0

    def _add(self, key: str, value: Tensor | float) -> None:
        self._acc[key] = value + self._acc[key]

    def update_batch(self, step: int, idx: Tensor | None = None, q_abs: Tensor | None = None,
                     distance: Tensor | None = None, weights: Tensor | None = None,
                     loss: Tensor | float | None = None) -> None:
        """Note one batch (pool indices, |Q|, distance, correction weights, loss). The statistics
        are computed for many batches at once when the round ends (or when the noted batches
        reach ``FLUSH_ELEMENTS``): per step this is a list append, where computing them per batch
        cost a sixth of the default job's step (benchmarks/step_overhead.md)."""
        self._last_step = int(step)
        self._batches += 1
        batch = (_flat(idx), _flat(q_abs), _flat(distance), _flat(weights),
                 loss.detach() if isinstance(loss, Tensor) else loss)
        self._pending.append(batch)
        self._pending_elements += sum(t.numel() for t in batch[:4] if t is not None)
        if self._pending_elements >= FLUSH_ELEMENTS:
            self._flush()

    def _flush(self) -> None:
        """Accumulate the noted batches: the same per-batch statistics (batch minima, ESS and
        mean loss of each batch), computed over all of them in a few vectorised operations."""
        pending, self._pending, self._pending_elements = self._pending, [], 0
        if not pending:
            return
        for idx, *_ in pending:
            if idx is not None and self._n_idx < self.config.max_round_indices:
                keep = idx[: self.config.max_round_indices - self._n_idx]
                self._idx.append(keep)
                self._n_idx += keep.numel()
        qs = [q for _, q, *_ in pending if q is not None and q.numel()]
        if qs:
            self._update_q(qs)
        refs = [d if d is not None else q for _, q, d, _, _ in pending
                if (d if d is not None else q) is not None and (d if d is not None else q).numel()]
        if refs:
            ref = torch.cat(refs).abs()
            self._add("near", (ref < self.config.near_pole_threshold).sum())
            self._add("near_total", float(ref.numel()))
            counts = torch.bincount(bucket_index(ref.nan_to_num(nan=math.inf)),
                                    minlength=N_BUCKETS)[:N_BUCKETS]
            self._buckets = counts + self._buckets
        ws = [w for *_, w, _ in pending if w is not None and w.numel()]
        if ws:
            w, seg = _segments(ws)
            w = w.double()
            total = torch.zeros(len(ws), dtype=w.dtype, device=w.device).index_add_(0, seg, w)
            square = torch.zeros_like(total).index_add_(0, seg, w * w)
            ess = total**2 / square.clamp_min(1e-300)
            sizes = torch.tensor([t.numel() for t in ws], dtype=w.dtype, device=w.device)
            self._add("ess_sum", ess.sum())
            self._add("ess_frac_sum", (ess / sizes).sum())
            self._add("w_batches", float(len(ws)))
            self._acc["w_max"] = w.max().clamp_min(self._acc["w_max"])
        losses = [loss for *_, loss in pending if loss is not None]
        tensors = [t.double().reshape(-1) for t in losses if isinstance(t, Tensor)]
        if tensors:
            values, seg = _segments(tensors)
            sums = torch.zeros(len(tensors), dtype=values.dtype, device=values.device)
            sizes = torch.tensor([t.numel() for t in tensors], dtype=values.dtype, device=values.device)
            self._add("loss_sum", (sums.index_add_(0, seg, values) / sizes).sum())
            self._add("loss_count", float(len(tensors)))
        floats = [float(v) for v in losses if not isinstance(v, Tensor)]
        if floats:
            self._add("loss_sum", math.fsum(floats))
            self._add("loss_count", float(len(floats)))

    def _update_q(self, qs: list[Tensor]) -> None:
        """Batch minima, mean |Q|, the histogram and the round's snapshot from batches ``qs``."""
        q, seg = _segments([t.abs().double() for t in qs])
        finite = q.nan_to_num(nan=math.inf)
        minima = torch.full((len(qs),), math.inf, dtype=q.dtype, device=q.device)
        minima = minima.scatter_reduce(0, seg, finite, reduce="amin", include_self=True)
        self._last_batch_q_min = minima[-1]
        self._acc["q_min"] = minima.min().clamp_max(self._acc["q_min"])
        self._add("q_min_batch_sum", minima.sum())
        self._add("q_batches", float(len(qs)))
        ok = torch.isfinite(q)
        self._add("q_sum", torch.where(ok, q, 0.0).sum())
        self._add("q_count", ok.sum())
        self._push_histogram(q)
        if self.config.snapshot_every and self._n_round_q < self.config.max_round_indices:
            keep = q[: self.config.max_round_indices - self._n_round_q]
            self._round_q.append(keep)
            self._n_round_q += keep.numel()

    def _push_histogram(self, q: Tensor) -> None:
        size = self.config.histogram_size
        if self._hist is None or self._hist.device != q.device:
            self._hist = torch.zeros(size, dtype=torch.float64, device=q.device)
            self._hist_pos = self._hist_filled = 0
        v = q[-size:]
        pos = (self._hist_pos + torch.arange(v.numel(), device=q.device)) % size
        self._hist[pos] = v
        self._hist_pos = (self._hist_pos + v.numel()) % size
        self._hist_filled = min(self._hist_filled + v.numel(), size)

    def probe_gradients(self, params: list[Tensor], losses: Tensor, weights: Tensor,
                        near_values: Tensor | None) -> None:
        """Gradient norms of the near-pole and the far-pole part of a batch's weighted loss
        (``near_values``: each sample's distance, or |Q|, compared with the threshold)."""
        if near_values is None:
            return
        near = near_values < self.near_threshold
        norms: list[float | None] = []
        for mask in (near, ~near):
            if not bool(mask.any()):
                norms.append(None)
                continue
            part = (weights[mask] * losses[mask]).sum() / weights.sum().clamp_min(1e-12)
            grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
            flat = [g.reshape(-1) for g in grads if g is not None]
            norms.append(float(torch.cat(flat).norm()) if flat else None)
        self.update_gradients(norms[0], norms[1])

    def update_gradients(self, near_norm: float | None, far_norm: float | None) -> None:
        """Gradient norms of the near-pole and far-pole parts of a batch (either may be None)."""
        for name, value in (("near", near_norm), ("far", far_norm)):
            if value is not None and math.isfinite(float(value)):
                self._add(f"grad_{name}_sum", float(value))
                self._add(f"grad_{name}_count", 1.0)

    # -- per round -------------------------------------------------------------------------------
    def end_round(self, round_idx: int) -> dict[str, float]:
        """The round's metrics (every key of :data:`RECORD_KEYS`, NaN where unknown).

        The full record (plus ``schema_version``, ``round``, ``step``, ``batches``) goes to
        :attr:`history` and, with an export path, to the JSONL file.
        """
        self._flush()
        acc = {k: float(v) for k, v in self._acc.items()}

        def ratio(num: str, den: str) -> float:
            return acc[num] / acc[den] if acc[den] > 0 else math.nan

        q_min = acc["q_min"] if acc["q_batches"] > 0 else math.nan
        grad_near = ratio("grad_near_sum", "grad_near_count")
        grad_far = ratio("grad_far_sum", "grad_far_count")
        buckets = (self._buckets.tolist() if isinstance(self._buckets, Tensor)
                   else [math.nan] * N_BUCKETS)
        diversity = math.nan
        if self._idx:
            idx = torch.cat(self._idx)
            diversity = torch.unique(idx).numel() / idx.numel()
        record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "round": int(round_idx),
            "step": math.nan if self._last_step is None else self._last_step,
            "batches": self._batches,
            "sampler/q_min": q_min,
            "sampler/q_min_batch": float(self._last_batch_q_min),
            "sampler/q_min_batch_mean": ratio("q_min_batch_sum", "q_batches"),
            "sampler/q_mean_abs": ratio("q_sum", "q_count"),
            "sampler/near_pole_ratio": ratio("near", "near_total"),
            "sampler/diversity": diversity,
            "sampler/ess": ratio("ess_sum", "w_batches"),
            "sampler/ess_fraction": ratio("ess_frac_sum", "w_batches"),
            "sampler/weight_max": acc["w_max"] if acc["w_batches"] > 0 else math.nan,
            "sampler/loss": ratio("loss_sum", "loss_count"),
            **{f"sampler/bucket_count/B{b}": float(c) for b, c in enumerate(buckets)},
            "sampler/grad_norm_near": grad_near,
            "sampler/grad_norm_far": grad_far,
            "sampler/grad_ratio": grad_near / grad_far if grad_far > 0 else math.nan,
        }
        if math.isfinite(q_min):
            self.q_min_global = min(self.q_min_global, q_min)
            if q_min < self.config.q_min_warning:
                log.warning("round %d: sampled q_min %.3g below %.3g", round_idx, q_min,
                            self.config.q_min_warning)
        self.history.append(record)
        self._write(record)
        self._snapshot(round_idx)
        self._reset_round()
        return {k: record[k] for k in RECORD_KEYS}

    def _write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        clean = {k: _finite_or_none(v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean, allow_nan=False) + "\n")

    def _snapshot(self, round_idx: int) -> None:
        every = self.config.snapshot_every
        if not every or round_idx % every or self.snapshot_dir is None or not self._round_q:
            return
        os.makedirs(self.snapshot_dir, exist_ok=True)
        q = torch.cat(self._round_q).cpu().numpy()
        path = os.path.join(self.snapshot_dir, f"sampled_q_round{round_idx:06d}.npz")
        np.savez_compressed(path, q_abs=q, round=np.int64(round_idx))

    def histogram_values(self) -> Tensor:
        """The most recent sampled |Q| (up to ``histogram_size``, oldest first), on CPU."""
        if self._hist is None:
            return torch.zeros(0, dtype=torch.float64)
        if self._hist_filled < self.config.histogram_size:
            return self._hist[: self._hist_filled].cpu()
        return torch.roll(self._hist, -self._hist_pos).cpu()

    def summary(self) -> dict[str, float]:
        """Run-level scalars: global q_min and rounds recorded."""
        return {"sampler/q_min_global": self.q_min_global if math.isfinite(self.q_min_global)
                else math.nan, "sampler/rounds": float(len(self.history))}

    # -- persistence -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Completed rounds' history, the global q_min and the histogram buffer.

        A partly accumulated round is not saved: a resumed run starts a fresh round.
        """
        return {
            "history": [dict(r) for r in self.history],
            "q_min_global": self.q_min_global,
            "hist": None if self._hist is None else self._hist.cpu().clone(),
            "hist_pos": self._hist_pos,
            "hist_filled": self._hist_filled,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = collections.deque((dict(r) for r in state["history"]),
                                         maxlen=self.config.max_history)
        self.q_min_global = float(state["q_min_global"])
        self._hist = None if state["hist"] is None else state["hist"].clone()
        self._hist_pos = int(state["hist_pos"])
        self._hist_filled = int(state["hist_filled"])
        self._reset_round()


class NoMonitor:
    """The monitor of ``diagnostics=none``: records nothing, so the loop needs no branch."""

    wants_q = False

    def gradient_due(self, step: int) -> bool:
        return False

    def probe_gradients(self, *args: Any) -> None:
        """Nothing to measure."""

    def update_batch(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to record."""

    def end_round(self, round_idx: int) -> dict[str, float]:
        return {}

    def histogram_values(self) -> Tensor:
        return torch.zeros(0, dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""
