"""Simulation executors, user-solver wrappers and the asynchronous-generation feed."""

from __future__ import annotations

import multiprocessing as mp
import re
import shlex
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nearpole_exp.acquisition.feed import SimulationFeed
from nearpole_exp.acquisition.ogas.breeder import OGASBreeder
from nearpole_exp.acquisition.static import StaticBreeder
from nearpole_exp.errors import ConfigError, ProblemError
from nearpole_exp.execution import (
    Executor,
    ExecutorConfig,
    InProcessExecutor,
    ProcessPoolExecutor,
    SimulationResult,
    SubmititExecutor,
    merge_results,
)
from nearpole_exp.execution.factory import HydraProblem, PickledProblem
from nearpole_exp.execution.solvers import (
    CallableSimulator,
    CommandLineSimulator,
    SolverFailed,
    SolverTimeout,
    call_with_timeout,
    resolve_callable,
)
from nearpole_exp.pool import Pool
from nearpole_exp.problems.base import Samples
from tests.sleep_solver import BOUNDS_HIGH, BOUNDS_LOW, SleepSolver, params_for, trajectory

CLI = Path(__file__).with_name("cli_solver.py")
TIMEOUT = 1.0


def make_problem(cost_s: float = 0.0, flaky_dir: str = "", **kw: object) -> CallableSimulator:
    return CallableSimulator(fn=SleepSolver(cost_s, flaky_dir=flaky_dir), low=BOUNDS_LOW,
                             high=BOUNDS_HIGH, grid=16, n_steps=4, n_eval=4, **kw)


def rows(*modes: str, speed: float = 1.0) -> torch.Tensor:
    return torch.tensor(params_for(*modes, speed=speed), dtype=torch.float32)


def assert_same(a: Samples, b: Samples) -> None:
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.source, b.source)


def by_id(results: list[SimulationResult]) -> dict[int, SimulationResult]:
    return {r.sim_id: r for r in results}


def pid_gone(pid: int, wait_s: float = 5.0) -> bool:
    """Whether process ``pid`` has exited (gone or a zombie) within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(") ")[1][0] in "ZX":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------ in-process
def test_inprocess_results_equal_single_labels_and_merge_into_the_pool() -> None:
    problem = make_problem()
    params = torch.tensor([[0.3, 0.1], [1.2, -0.5], [1.8, 0.7]])
    ex = InProcessExecutor(problem=problem)
    ex.submit(torch.tensor([10, 11, 12]), params)
    assert ex.in_flight() == 3
    results = ex.poll()
    assert [r.sim_id for r in results] == [10, 11, 12] and ex.in_flight() == 0
    for i, res in enumerate(results):
        assert res.ok and res.attempts == 1 and torch.equal(res.params, params[i])
        assert_same(res.samples, problem.label(params[i : i + 1]))
    merged, ids = merge_results(results)
    pool = Pool()
    pool.add(merged, n_points=len(ids))
    assert ids.tolist() == [10, 11, 12] and len(pool) == 12
    assert torch.equal(pool.source, torch.arange(3).repeat_interleave(4))
    assert torch.equal(pool.targets, problem.label(params).targets)


def test_inprocess_isolates_faults_and_keeps_nonfinite_on_request() -> None:
    params = rows("normal", "crash", "nan")
    ex = InProcessExecutor(problem=make_problem(), retries=2)
    ex.submit(torch.arange(3), params)
    res = by_id(ex.poll())
    assert res[0].ok and res[1].failure == "crashed: RuntimeError: boom" and res[1].attempts == 3
    assert res[2].failure == "non-finite output" and res[2].samples is None
    assert ex.metrics()["executor/crashed"] == 1 and ex.metrics()["executor/non_finite"] == 1
    keep = InProcessExecutor(problem=make_problem(), nonfinite="keep")
    keep.submit(torch.arange(2), rows("normal", "nan"))
    merged, ids = merge_results(keep.poll())
    pool = Pool()
    pool.add(merged, n_points=len(ids))
    assert len(ids) == 2 and len(pool) == 4 and pool.n_rejected == 4
    with pytest.raises(ConfigError) as err:
        InProcessExecutor(problem=make_problem(), timeout_s=1.0)
    assert err.value.key == "timeout_s"
    with pytest.raises(ValueError, match="unique"):
        keep.submit(torch.tensor([5, 5]), rows("normal", "normal"))


# ------------------------------------------------------------------------------ process pool
@pytest.fixture(scope="module")
def pool_executor() -> ProcessPoolExecutor:
    ex = ProcessPoolExecutor(problem=make_problem(cost_s=0.3), workers=2, timeout_s=TIMEOUT)
    deadline = time.monotonic() + 60
    while ex.n_ready < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield ex
    ex.close()


def test_pool_results_equal_single_labels_in_completion_order(
        pool_executor: ProcessPoolExecutor) -> None:
    problem = make_problem()
    slow = rows("normal", speed=1.9)
    fast = rows("normal", "normal", speed=0.1)
    params = torch.cat([slow, fast])
    pool_executor.submit(torch.tensor([0, 1, 2]), params)
    assert pool_executor.in_flight() == 3
    results = pool_executor.drain(timeout=30)
    assert [r.sim_id for r in results] == [1, 2, 0]
    assert pool_executor.in_flight() == 0 and pool_executor.poll() == []
    for res in results:
        assert res.ok and res.wall_s > 0
        assert_same(res.samples, problem.label(params[res.sim_id : res.sim_id + 1]))


def test_pool_records_timeouts_crashes_and_nonfinite_and_survives(
        pool_executor: ProcessPoolExecutor) -> None:
    before = pool_executor.worker_pids()
    params = rows("hang", "crash", "exit", "nan", "normal", speed=0.1)
    pool_executor.submit(torch.arange(100, 105), params)
    res = by_id(pool_executor.drain(timeout=30))
    assert sorted(res) == list(range(100, 105))
    assert res[100].failure == f"timeout after {TIMEOUT:g}s"
    assert TIMEOUT <= res[100].wall_s < TIMEOUT + 5.0
    assert res[101].failure == "crashed: RuntimeError: boom"
    assert res[102].failure == "crashed: worker process exited with code 3"
    assert res[103].failure == "non-finite output" and res[103].samples is None
    assert res[104].ok and res[104].samples.inputs.shape == (4, 3, 16)
    assert all(r.attempts == 1 for r in res.values())
    assert res[101].record() == {"sim_id": 101, "params": params[1].tolist(),
                                 "reason": "crashed: RuntimeError: boom", "attempts": 1,
                                 "wall_s": round(res[101].wall_s, 4)}
    assert len(set(before) - set(pool_executor.worker_pids())) == 2  # hung and exited: replaced
    pool_executor.submit(torch.tensor([200, 201]), rows("normal", "normal", speed=0.1))
    assert all(r.ok for r in pool_executor.drain(timeout=30))


def check_retries(make_executor, flaky_dir: Path, timeout: float) -> None:
    """``make_executor(problem, retries=1)`` retries a flaky solver to success and a crashing
    one to its last attempt."""
    problem = make_problem(flaky_dir=str(flaky_dir))
    with make_executor(problem, retries=1) as ex:
        ex.submit(torch.tensor([0, 1]), torch.cat([rows("flaky"), rows("crash")]))
        res = by_id(ex.drain(timeout=timeout))
    assert res[0].ok and res[0].attempts == 2
    assert_same(res[0].samples, problem.label(rows("flaky")))
    assert res[1].failure == "crashed: RuntimeError: boom" and res[1].attempts == 2
    assert ex.counts["retried"] == 2 and ex.counts["failed"] == 1


def test_pool_retries_crashes(tmp_path: Path) -> None:
    check_retries(lambda problem, **kw: ProcessPoolExecutor(problem=problem, workers=1, **kw),
                  tmp_path, timeout=30)


def test_pool_close_kills_everything_and_is_idempotent() -> None:
    threads = set(threading.enumerate())
    ex = ProcessPoolExecutor(problem=make_problem(), workers=2, timeout_s=60)
    ex.submit(torch.tensor([0, 1]), rows("hang", "normal"))
    done: list[SimulationResult] = []
    while not done:
        done += ex.poll(5.0)
    assert [r.sim_id for r in done] == [1] and ex.in_flight() == 1
    pids = ex.worker_pids()
    ex.close()
    ex.close()
    assert not set(pids) & {p.pid for p in mp.active_children()}
    assert all(pid_gone(pid) for pid in pids)
    assert set(threading.enumerate()) == threads
    assert ex.poll(1.0) == []
    with pytest.raises(RuntimeError, match="closed"):
        ex.submit(torch.tensor([2]), rows("normal"))


def test_pool_reports_a_problem_that_cannot_be_built() -> None:
    factory = HydraProblem({"_target_": "tests.sleep_solver.no_such_problem"})
    with ProcessPoolExecutor(factory=factory, workers=1) as ex:
        ex.submit(torch.tensor([0]), rows("normal"))
        with pytest.raises(RuntimeError, match="could not build the problem"):
            ex.drain(timeout=30)


# ------------------------------------------------------------------------------ submitit
def test_submitit_local_job_matches_labels_and_records_faults(tmp_path: Path) -> None:
    problem = make_problem()
    params = rows("normal", "crash", "hang", "nan", speed=0.1)
    with SubmititExecutor(problem=problem, cluster="local", folder=str(tmp_path / "jobs"),
                          sims_per_job=4, timeout_s=TIMEOUT) as ex:
        ex.submit(torch.arange(4), params)
        res = by_id(ex.drain(timeout=60))
    assert sorted(res) == [0, 1, 2, 3]
    assert_same(res[0].samples, problem.label(params[:1]))
    assert res[1].failure == "crashed: RuntimeError: boom"
    assert res[2].failure == f"timeout after {TIMEOUT:g}s"
    assert TIMEOUT <= res[2].wall_s < TIMEOUT + 5
    assert res[3].failure == "non-finite output"


def test_submitit_cancels_an_overdue_job(tmp_path: Path) -> None:
    with SubmititExecutor(problem=make_problem(), cluster="local", folder=str(tmp_path),
                          timeout_s=0.2, startup_grace_s=0.0, poll_interval_s=0.05) as ex:
        ex.submit(torch.tensor([7]), rows("hang"))
        (res,) = ex.drain(timeout=30)
        job = ex._ending[0].job
    assert res.failure == "timeout after 0.2s" and res.samples is None
    deadline = time.monotonic() + 30
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.done() and pid_gone(int(job.job_id))
    reason = ex._outcomes(job)
    if isinstance(reason, dict):
        # the job's own soft timeout (also 0.2 s) can interrupt the hang and write its result
        # just before the executor's kill lands: then that result is the timeout, not samples
        assert reason[7].failure == "timeout after 0.2s" and reason[7].payload is None
    else:
        assert reason.startswith(f"crashed: job {job.job_id} ended without a result")


def test_submitit_debug_runs_in_process(tmp_path: Path) -> None:
    problem = make_problem()
    params = rows("normal", "crash", "nan")
    with SubmititExecutor(problem=problem, cluster="debug", folder=str(tmp_path), sims_per_job=2,
                          retries=1) as ex:
        ex.submit(torch.arange(3), params)
        res = by_id(ex.drain(timeout=30))
    assert_same(res[0].samples, problem.label(params[:1]))
    assert res[1].failure == "crashed: RuntimeError: boom" and res[1].attempts == 2
    assert res[2].failure == "non-finite output" and res[2].attempts == 1


# ------------------------------------------------------------------------------ user solvers
def test_callable_simulator_from_an_import_path() -> None:
    problem = CallableSimulator(fn="tests.sleep_solver:solve", low=BOUNDS_LOW, high=BOUNDS_HIGH,
                                grid=16, n_steps=4, n_eval=4)
    params = torch.tensor([[0.5, 0.2], [1.5, -0.3]])
    samples = problem.label(params)
    frames = torch.tensor(trajectory(params[1].double().numpy(), 4, 16)).float()
    assert torch.equal(samples.targets[4:, 0], frames[1:])
    assert torch.equal(samples.inputs[4:, 0], frames[:-1])
    assert torch.allclose(samples.inputs[4, 1:, 0], problem.normalized(params)[1])
    assert problem.model_dims() == {"in_channels": 3, "out_channels": 1, "length": 16}
    clone = PickledProblem(problem)()
    assert clone._fn is None and clone.fn is resolve_callable("tests.sleep_solver.solve")
    assert_same(clone.label(params), samples)
    metrics = problem.evaluate(lambda x: x[:, :1])
    assert 0 < metrics["eval/nrmse_mean"] < 2


def test_callable_simulator_validates_config_and_output_shape() -> None:
    with pytest.raises(ConfigError) as err:
        CallableSimulator(fn="tests.sleep_solver:solve", low=[0.0, 0.0], high=[1.0])
    assert err.value.key == "high"
    with pytest.raises(ConfigError) as err:
        CallableSimulator(low=[0.0], high=[1.0])
    assert err.value.key == "fn"
    wrong = CallableSimulator(fn=SleepSolver(grid=8), low=BOUNDS_LOW, high=BOUNDS_HIGH, grid=16,
                              n_steps=4)
    with pytest.raises(ValueError, match=r"shape \(5, 8\), expected"):
        wrong.label(rows("normal"))
    batched = CallableSimulator(fn=lambda p: np.stack([trajectory(r, 4, 16) for r in p]),
                                vectorized=True, low=BOUNDS_LOW, high=BOUNDS_HIGH, grid=16,
                                n_steps=4)
    two = rows("normal", "normal")
    assert_same(batched.label(two), make_problem().label(two))


def test_command_line_simulator_round_trips_through_a_script(tmp_path: Path) -> None:
    script = f"{shlex.quote(sys.executable)} {shlex.quote(str(CLI))}"
    command = f"{script} --params {{params}} --out {{output}}"
    problem = CommandLineSimulator(command=command, low=BOUNDS_LOW, high=BOUNDS_HIGH, grid=16,
                                   n_steps=4, work_dir=str(tmp_path / "runs"), timeout_s=20)
    params = torch.tensor([[0.5, 0.2], [1.5, -0.3]])
    assert_same(problem.label(params), make_problem().label(params))
    assert list((tmp_path / "runs").iterdir()) == []
    with pytest.raises(SolverFailed, match="exit status 2: solver diverged"):
        problem.label(rows("crash"))
    quick = CommandLineSimulator(command=command, low=BOUNDS_LOW, high=BOUNDS_HIGH, grid=16,
                                 n_steps=4, work_dir=str(tmp_path / "runs"), timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"longer than timeout_s=0\.5s"):
        quick.label(rows("hang"))
    assert time.monotonic() - start < 10
    with pytest.raises(ConfigError) as err:
        CommandLineSimulator(command="solver --in {parms}", low=[0.0], high=[1.0])
    assert err.value.key == "command"


def test_eval_cache_labels_the_held_out_set_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "eval.pt"
    first = make_problem(eval_cache=str(cache))
    params, inputs, targets = first.eval_set()
    assert cache.exists() and len(params) == 4
    second = make_problem(eval_cache=str(cache))
    monkeypatch.setattr(second, "simulate", lambda p: pytest.fail("the cache was not used"))
    again = second.eval_set()
    assert torch.equal(again[1], inputs) and torch.equal(again[2], targets)


def test_a_held_out_set_is_labelled_in_the_workers_and_survives_a_solver_that_aborts() -> None:
    """A solver that aborts or exits on some held-out points loses those points (logged), never
    the run; the executor's counters stay those of the training simulations."""
    problem = CallableSimulator(fn="tests.abort_solver:solve", low=BOUNDS_LOW, high=BOUNDS_HIGH,
                                grid=16, n_steps=4, n_eval=16)
    with ProcessPoolExecutor(problem=problem, workers=2, timeout_s=60) as ex:
        problem.label_eval_through(ex)
        assert ex.counts["submitted"] == 0 and ex.counts["crashed"] == 0
    params, inputs, targets = problem.eval_set()
    every = problem.eval_params()
    survive = (every[:, 0] <= 1.5) & (every[:, 0] >= 0.3)
    assert 0 < int(survive.sum()) < len(every)
    assert torch.equal(params, every[survive])
    expected = make_problem().pairs(every[survive])
    assert torch.allclose(inputs, expected[0]) and torch.allclose(targets, expected[1])


# ------------------------------------------------------------------------------ feed
class ScriptedExecutor(Executor):
    """Test double: each poll finishes the oldest ``per_poll`` simulations; ids in ``fail`` fail."""

    def __init__(self, capacity: int = 2, per_poll: int = 1, fail: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.config = ExecutorConfig()
        self._capacity, self.per_poll, self.fail = capacity, per_poll, set(fail)
        self.queue: list[tuple[int, torch.Tensor]] = []
        self.submitted: list[tuple[int, torch.Tensor]] = []
        self.peak = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def _start(self, sim_ids: torch.Tensor, params: torch.Tensor) -> None:
        pairs = list(zip(sim_ids.tolist(), params.clone(), strict=True))
        self.queue += pairs
        self.submitted += pairs
        self.peak = max(self.peak, self.in_flight())

    def _collect(self, timeout: float) -> list[SimulationResult]:
        done, self.queue = self.queue[: self.per_poll], self.queue[self.per_poll :]
        return [SimulationResult(i, p, None, "crashed: scripted") if i in self.fail else
                SimulationResult(i, p, Samples(p[None], p[None], torch.zeros(1, dtype=torch.long)))
                for i, p in done]

    def _shutdown(self) -> None:
        self.queue = []


def test_feed_rewrites_only_unsubmitted_ids_and_keeps_the_budget(caplog) -> None:
    torch.manual_seed(0)
    breeder = OGASBreeder(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), synchronous=True,
                          activate_breed=False)
    ex = ScriptedExecutor(capacity=2, per_poll=1, fail=(3, 7))
    feed = SimulationFeed(ex, breeder, budget=11, generation_size=4, regenerate_after=2)
    finished: list[int] = []
    while not feed.done:
        finished += [r.sim_id for r in feed.pump()]
    ids = [i for i, _ in ex.submitted]
    assert ids == list(range(11)) and sorted(finished) == list(range(11))
    assert ex.peak == 4 and breeder.n_asked == 11
    ran = torch.stack([p for _, p in ex.submitted])
    assert torch.equal(ran, breeder.parameters_of(torch.arange(11)))
    assert feed.n_rewritten > 0 and feed.generations > 11 / 4
    assert [f["sim_id"] for f in feed.failures] == [3, 7]
    assert feed.metrics()["sims/failed"] == 2 and feed.metrics()["sims/finished"] == 11
    logged = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(logged) == 2 and logged[0].startswith("simulation 3 ")  # each with its reason


def test_feed_with_a_plain_breeder_and_the_in_process_executor() -> None:
    torch.manual_seed(1)
    problem = make_problem()
    breeder = StaticBreeder(problem.bounds, design="sobol")
    ex = InProcessExecutor(problem=problem)
    feed = SimulationFeed(ex, breeder, budget=10, generation_size=4)
    pool, seen = Pool(), []
    while not feed.done:
        merged, ids = merge_results(feed.pump())
        if merged is not None:
            pool.add(merged, n_points=len(ids))
            seen += ids.tolist()
    assert seen == list(range(10)) and breeder.n_asked == 10 and feed.generations == 3
    assert len(pool) == 40 and ex.counts["submitted"] == 10


def test_feed_resumes_and_resubmits_what_was_in_flight(tmp_path: Path) -> None:
    torch.manual_seed(2)
    breeder = OGASBreeder(torch.tensor([[0.0, 1.0]]), synchronous=True, activate_breed=False)
    first = SimulationFeed(ScriptedExecutor(capacity=2), breeder, budget=9, generation_size=3)
    finished = [r.sim_id for _ in range(3) for r in first.pump()]
    torch.save(first.state_dict(), tmp_path / "feed.pt")
    state = torch.load(tmp_path / "feed.pt", weights_only=True)
    assert state["flight_ids"].tolist() == [3, 4, 5, 6]
    ex = ScriptedExecutor(capacity=2)
    second = SimulationFeed(ex, breeder, budget=9, generation_size=3)
    second.load_state_dict(state)
    while not second.done:
        finished += [r.sim_id for r in second.pump()]
    assert sorted(finished) == list(range(9))
    assert [i for i, _ in ex.submitted][:4] == [3, 4, 5, 6]
    assert second.n_finished == 9 and second.n_submitted == 9


def test_call_with_timeout_returns_raises_and_gives_up() -> None:
    assert call_with_timeout(np.sum, np.arange(4.0), 5.0) == 6.0
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda a: 1 / 0, np.zeros(1), 5.0)
    start = time.monotonic()
    with pytest.raises(SolverTimeout, match=r"timeout_s=0\.2s"):
        call_with_timeout(lambda a: time.sleep(30), np.zeros(1), 0.2)
    assert time.monotonic() - start < 5
    with pytest.raises(ConfigError) as err:
        CallableSimulator(fn="tests.sleep_solver:solve", low=[0.0], high=[1.0], timeout_s=float("inf"))
    assert err.value.key == "timeout_s"


@pytest.mark.parametrize(("output", "reason"), [
    (None, "returned None"),
    ([[0.0] * 16] * 2 + [[0.0] * 3] * 3, "not an array"),
    (np.array([np.zeros(16), "x"], dtype=object), "object values"),
    (np.zeros((5, 16), dtype=complex), "complex values"),
    (np.full((5, 16), "a"), "<U1 values"),
    (np.zeros((2, 16)), "returned shape (2, 16)"),
    (np.full((5, 16), 1e300), "beyond float32"),
])
def test_a_solver_output_that_is_not_frames_says_what_came_back(output, reason) -> None:
    problem = CallableSimulator(fn=SleepSolver(), low=BOUNDS_LOW, high=BOUNDS_HIGH, grid=16,
                                n_steps=4, n_eval=4)
    with pytest.raises(ProblemError, match=re.escape(reason)):
        problem.checked(output)


@pytest.mark.parametrize(("writer", "reason"), [
    ("true", "wrote no output.npy"),
    ("echo 1 2 3 > {output}", "not a .npy file"),
    ("python -c 'import pickle,sys; pickle.dump([1], open(sys.argv[1], \"wb\"))' {output}",
     "a pickle"),
    ("python -c 'import numpy,sys; numpy.save(sys.argv[1], numpy.zeros((5, 16)))' {output} && "
     "truncate -s 100 {output}", "a truncated or damaged .npy file"),
    ("mkfifo {output}", "not a regular file"),
])
def test_a_command_output_that_is_not_an_npy_array_says_what_is_there(writer, reason,
                                                                      tmp_path: Path) -> None:
    problem = CommandLineSimulator(command=writer, shell=True, low=[0.0], high=[1.0], grid=16,
                                   n_steps=4, n_eval=4, timeout_s=30, work_dir=str(tmp_path))
    with pytest.raises(SolverFailed, match=re.escape(reason)) as err:
        problem.solve_one(np.array([0.5]))
    assert "keep_files" in str(err.value)
    assert not any(tmp_path.iterdir())  # its work directory is gone


def test_a_relative_solver_path_is_found_from_the_launch_directory(tmp_path: Path,
                                                                   monkeypatch) -> None:
    solver = tmp_path / "solver.py"
    solver.write_text("import numpy, sys\nnumpy.save(sys.argv[1], numpy.ones((5, 16)))\n")
    monkeypatch.chdir(tmp_path)
    problem = CommandLineSimulator(command=f"{sys.executable} solver.py {{output}}", low=[0.0],
                                   high=[1.0], grid=16, n_steps=4, n_eval=4, timeout_s=60)
    assert str(solver) in problem.config.command
    assert np.array_equal(problem.solve_one(np.array([0.5])), np.ones((5, 16)))


def test_no_command_solver_process_outlives_the_process_pool(tmp_path: Path) -> None:
    """A command that starts a long child of its own: closing the pool (as a run's end or a
    stop does) kills it too, not only the workers."""
    marker = tmp_path / "pids"
    command = (f"sleep 300 & echo $! >> {marker}; sleep 300; "
               f"{shlex.quote(sys.executable)} -c 'import numpy,sys; "
               f"numpy.save(sys.argv[1], numpy.zeros((5, 16)))' {{output}}")
    problem = CommandLineSimulator(command=command, shell=True, low=[0.0], high=[1.0], grid=16,
                                   n_steps=4, n_eval=4, timeout_s=0)
    ex = ProcessPoolExecutor(problem=problem, workers=2, timeout_s=600)
    ex.submit(torch.tensor([0, 1]), torch.tensor([[0.2], [0.4]]))
    deadline = time.monotonic() + 60
    while (not marker.exists() or len(marker.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p) for p in marker.read_text().split()]
    assert len(pids) == 2
    ex.close()
    assert all(pid_gone(pid) for pid in pids)
