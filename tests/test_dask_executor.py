"""executor=dask on a LocalCluster: the executor contract (results equal single labels, faults
recorded per simulation, retries, a hung task stopped) and a run that keeps its budget and
resumes where it stopped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from nearpole_exp.runner import Runner
from tests.test_async_runs import SOLVER
from tests.test_execution import assert_same, by_id, check_retries, make_problem, rows

from .conftest import run_interrupted_then_resumed

pytest.importorskip("distributed")
from nearpole_exp.execution.dask_executor import DaskExecutor

TIMEOUT = 3.0  # long enough that a worker's death is reported before the watchdog fires


@pytest.fixture(scope="module")
def dask_executor() -> DaskExecutor:
    ex = DaskExecutor(problem=make_problem(cost_s=0.3), workers=2, timeout_s=TIMEOUT)
    yield ex
    ex.close()


def test_dask_results_equal_single_labels_in_completion_order(dask_executor: DaskExecutor) -> None:
    problem = make_problem()
    params = torch.cat([rows("normal", speed=1.9), rows("normal", "normal", speed=0.1)])
    dask_executor.submit(torch.tensor([0, 1, 2]), params)
    assert dask_executor.in_flight() == 3 and dask_executor.capacity == 2
    results = dask_executor.drain(timeout=60)
    assert [r.sim_id for r in results] == [1, 2, 0] and dask_executor.in_flight() == 0
    for res in results:
        assert res.ok and res.attempts == 1
        assert_same(res.samples, problem.label(params[res.sim_id : res.sim_id + 1]))


def test_dask_records_timeouts_crashes_dead_workers_and_nonfinite(dask_executor: DaskExecutor) -> None:
    params = rows("hang", "crash", "exit", "nan", "normal", speed=0.1)
    start = time.monotonic()
    dask_executor.submit(torch.arange(100, 105), params)
    res = by_id(dask_executor.drain(timeout=120))
    assert sorted(res) == list(range(100, 105)) and time.monotonic() - start < 60
    assert res[100].failure == f"timeout after {TIMEOUT:g}s" and res[100].wall_s >= TIMEOUT
    assert res[101].failure == "crashed: RuntimeError: boom"
    assert res[102].failure == "crashed: the Dask worker running it died (KilledWorker)"
    assert res[103].failure == "non-finite output" and res[103].samples is None
    assert res[104].ok and res[104].samples.inputs.shape == (4, 3, 16)
    counts = dask_executor.metrics()
    assert counts["executor/timeout"] >= 1 and counts["executor/crashed"] >= 2
    # the hung worker was restarted and the dead one replaced: both take work again
    dask_executor.submit(torch.tensor([200, 201, 202]), rows("normal", "normal", "normal", speed=0.1))
    assert all(r.ok for r in dask_executor.drain(timeout=60))


def test_dask_retries_a_crash(tmp_path: Path) -> None:
    check_retries(lambda problem, **kw: DaskExecutor(problem=problem, workers=1, **kw),
                  tmp_path, timeout=60)


def test_a_dask_run_keeps_its_budget_and_resumes_to_it(composer, monkeypatch) -> None:
    overrides = [*SOLVER, "executor=dask", "executor.workers=2", "executor.timeout_s=30", "seed=4"]
    cfg = composer(overrides, "whole")
    summary = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    budget = 24 * 3
    assert summary["status"] == "completed"
    assert summary["sims/submitted"] == summary["sims/finished"] == budget
    assert {f["reason"].split(":")[0] for f in summary["sims/failures"]} <= {"crashed", "non-finite output"}
    resumed = run_interrupted_then_resumed(composer, monkeypatch, overrides, stop_after=30)
    assert resumed["status"] == "completed" and resumed["step"] == summary["step"]
    assert resumed["sims/finished"] == budget


def test_an_unreachable_scheduler_is_an_error_naming_the_key() -> None:
    from nearpole_exp.execution.base import ExecutorError

    with pytest.raises(ExecutorError, match=r"tcp://127\.0\.0\.1:9.*executor\.address"):
        DaskExecutor(problem=make_problem(), address="tcp://127.0.0.1:9", start_timeout_s=2)
