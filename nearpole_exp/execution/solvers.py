"""Bring your own solver: wrap a Python function or a command line as a simulator problem.

Both wrappers are :class:`~nearpole_exp.problems.simulator.SimulatorProblem` subclasses, so a
user's solver gets the same samples (one-step pairs (u_t, λ) → u_{t+1}), blow-up handling,
held-out nRMSE evaluation and model dimensions as the built-in Burgers and KS solvers, and runs
under any executor (in-process, process pool, submitit). The solver sees one parameter vector
λ (float64, shape ``[p]``) at a time and returns its trajectory, frames u_0 … u_T on the grid,
shape ``[n_steps + 1, grid]``.

A Python callable, given as ``"package.module:function"`` (importable where the simulations run)
or, from Python, as the function itself::

    # my_solver.py
    import numpy as np
    def heat(params):                      # params = [diffusivity, amplitude]
        x = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        t = np.arange(21)[:, None] * 0.05
        return params[1] * np.exp(-params[0] * t) * np.sin(x)     # [21, 64]

    from nearpole_exp.execution.solvers import CallableSimulator
    problem = CallableSimulator(fn="my_solver:heat", low=[0.1, 0.5], high=[2.0, 1.5],
                                grid=64, n_steps=20, n_eval=32)

or in a Hydra problem config (``conf/problem/my_heat.yaml``)::

    _target_: nearpole_exp.execution.solvers.CallableSimulator
    fn: my_solver:heat
    low: [0.1, 0.5]
    high: [2.0, 1.5]
    grid: 64
    n_steps: 20
    n_eval: 32
    eval_cache: ${hydra:runtime.cwd}/heat_eval.pt   # label the held-out set once, reuse it

Every solver call runs under ``timeout_s`` (default one hour; 0: no limit) whatever the
executor; a call past it is recorded as a ``timeout`` failure of that simulation (under the
default ``executor=batched`` it stops the run with that message instead, as any solver error
does). A Python function cannot be stopped from outside, so it is left running on a daemon
thread; ``executor=process_pool`` kills the worker instead.

``vectorized: true`` passes all rows at once (``[n, p]`` → ``[n, T+1, L]``) to a batched
torch/JAX solver instead.

An external program, run once per simulation in its own work directory::

    _target_: nearpole_exp.execution.solvers.CommandLineSimulator
    command: python /path/to/solver.py --params {params} --out {output}
    low: [0.1, 0.5]
    high: [2.0, 1.5]
    grid: 64
    n_steps: 20
    timeout_s: 600

``{params}`` is replaced by the path of a JSON file ``{"params": [λ_0, λ_1, …]}``, ``{output}``
by the path where the program must save a NumPy ``.npy`` array ``[n_steps + 1, grid]``, and
``{workdir}`` by the simulation's directory (also its working directory; under ``work_dir``,
default the system temp dir; removed after success unless ``keep_files``). Literal braces in the
command are written ``{{`` ``}}``. A non-zero exit status raises (the executor records the
simulation as ``crashed`` with the program's last stderr line); running past ``timeout_s`` kills
the program's whole process group. Pair it with ``executor=process_pool`` (or submitit) to run
several at once.

Held-out evaluation runs the solver on ``n_eval`` points once per run: keep ``n_eval`` small for
costly solvers and set ``eval_cache`` to a file so later runs reuse those trajectories.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import stat
import string
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from nearpole_exp.atomic import save_torch
from nearpole_exp.errors import ConfigError, ProblemError, Terminated, check
from nearpole_exp.problems.simulator import SimulatorProblem, TrajectoryConfig

if TYPE_CHECKING:
    from nearpole_exp.execution.base import Executor

PLACEHOLDERS = ("params", "output", "workdir")
DEFAULT_TIMEOUT_S = 3600.0


log = logging.getLogger(__name__)


@dataclass
class SolverConfig(TrajectoryConfig):
    """Parameter box (``low``/``high`` per parameter), trajectory shape, blow-up threshold, an
    optional cache file for the held-out set, and ``timeout_s``: the wall-clock limit of one
    solver call under every executor (finite by default so a hung solver never hangs a run;
    0 removes the limit)."""

    name: str = "user_solver"
    low: list[float] = field(default_factory=lambda: [0.0])
    high: list[float] = field(default_factory=lambda: [1.0])
    grid: int = 64
    n_steps: int = 20
    blowup: float = 1e6
    eval_cache: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.low) >= 1, "low", "give one lower bound per parameter")
        check(len(self.high) == len(self.low), "high",
              f"needs as many entries as low ({len(self.low)}), got {len(self.high)}")
        check(all(h > lo for lo, h in zip(self.low, self.high, strict=True)), "high",
              "every upper bound must exceed its lower bound")
        check(self.grid >= 1, "grid", f"must be >= 1, got {self.grid}")
        check(self.n_steps >= 1, "n_steps", f"must be >= 1, got {self.n_steps}")
        check(self.blowup > 0, "blowup", f"must be positive, got {self.blowup}")
        check(math.isfinite(self.timeout_s) and self.timeout_s >= 0, "timeout_s",
              f"must be a finite number of seconds >= 0 (0: no limit), got {self.timeout_s}")


class UserSimulator(SimulatorProblem):
    """A simulator whose frames come from a user's solver, one parameter row at a time."""

    config: SolverConfig  # type: ignore[assignment]

    def __init__(self, config: SolverConfig) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.name = config.name
        self._bounds = torch.tensor([config.low, config.high], dtype=torch.float32).T.contiguous()
        self._tolerant = False

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    def solve_one(self, row: np.ndarray) -> Any:
        """Frames ``[n_steps + 1, grid]`` for one parameter vector (float64)."""
        raise NotImplementedError

    def solve_many(self, rows: np.ndarray) -> list[Any]:
        """Frames for each row; the default calls :meth:`solve_one` per simulation."""
        return [self.solve_one(row) for row in rows]

    def simulate(self, params: Tensor) -> Tensor:
        rows = params.detach().cpu().double().numpy()
        try:
            outputs = self.solve_many(rows)
        except Exception:
            if not self._tolerant:
                raise
            outputs = [self._solve_or_nan(row) for row in rows]
        frames = [self.checked(f) for f in outputs]
        shape = (len(rows), self.config.n_steps + 1, self.config.grid)
        return torch.stack(frames) if frames else torch.zeros(shape)

    def _solve_or_nan(self, row: np.ndarray) -> Any:
        """One row's frames, or NaN frames (a blown-up trajectory) when the solver raises."""
        try:
            return self.solve_one(row)
        except Exception as err:
            log.warning("%s: held-out simulation %s failed (%s); it is left out of evaluation",
                        self.name, row.tolist(), err)
            return np.full((self.config.n_steps + 1, self.config.grid), np.nan)

    def checked(self, frames: Any) -> Tensor:
        """The solver's output as float32 ``[n_steps + 1, grid]``; anything else is a
        ProblemError that says what came back (None, a ragged or object array, complex or
        non-numeric values, another shape, values beyond float32)."""
        want = (self.config.n_steps + 1, self.config.grid)
        expect = f"an array of shape [n_steps + 1, grid] = {list(want)}"
        if frames is None:
            raise ProblemError(f"{self.name}: the solver returned None; it must return {expect}")
        try:
            arr = np.asarray(frames)
        except (ValueError, TypeError) as err:  # ragged nested lists
            raise ProblemError(f"{self.name}: the solver's output is not {expect} ({err})") from None
        if np.iscomplexobj(arr):
            raise ProblemError(f"{self.name}: the solver returned complex values; return the real "
                               f"field (e.g. frames.real) as {expect}")
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                       or arr.dtype == np.bool_):
            raise ProblemError(f"{self.name}: the solver returned {arr.dtype} values (shape "
                               f"{arr.shape}); it must return numbers, {expect}")
        if arr.shape != want:
            raise ProblemError(f"{self.name}: the solver returned shape {tuple(arr.shape)}, "
                               f"expected [n_steps + 1, grid] = {list(want)}")
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        biggest = float(np.abs(finite).max()) if finite.size else 0.0
        if biggest > float(np.finfo(np.float32).max):
            raise ProblemError(f"{self.name}: the solver returned values up to {biggest:.3g}, beyond "
                               "float32 (a blown-up trajectory; the surrogate trains in float32)")
        return torch.as_tensor(arr).float()

    def _load_eval_cache(self) -> bool:
        """Take the held-out set from ``eval_cache`` when that file holds the same points."""
        path = self.config.eval_cache
        if self._eval is None and path and os.path.exists(path):
            saved = torch.load(path, weights_only=True)
            if torch.equal(saved["params_all"], self.eval_params()):
                self._eval = (saved["params"], saved["inputs"], saved["targets"])
        return self._eval is not None

    def _save_eval_cache(self) -> None:
        if self.config.eval_cache and self._eval is not None:
            params, inputs, targets = self._eval
            save_torch({"params_all": self.eval_params(), "params": params, "inputs": inputs,
                        "targets": targets}, self.config.eval_cache)

    def eval_set(self) -> tuple[Tensor, Tensor, Tensor]:
        """The held-out set, read from ``eval_cache`` when it holds the same points, else
        labelled here (and written there when ``eval_cache`` is set); a point whose solver
        raises is left out."""
        if not self._load_eval_cache():
            self._tolerant = True
            try:
                super().eval_set()
            finally:
                self._tolerant = False
            self._save_eval_cache()
        return self._eval  # type: ignore[return-value]

    def label_eval_through(self, executor: Executor) -> None:
        """Label the held-out set in the executor's workers, as the training simulations are: a
        solver that crashes, exits or hangs on a held-out point loses that point (logged with
        its reason), never the run. The executor's counters stay the training simulations'."""
        if self._load_eval_cache():
            return
        params = self.eval_params()
        counts, busy_s = dict(executor.counts), executor.busy_s
        ids = -1 - torch.arange(len(params))  # never a training simulation's id
        executor.submit(ids, params)
        results = {res.sim_id: res for res in executor.drain()}
        executor.counts, executor.busy_s = counts, busy_s
        keep, inputs, targets, reasons = [], [], [], set()
        for i, sim_id in enumerate(ids.tolist()):
            res = results.get(sim_id)
            if res is None or res.samples is None or not res.ok:
                reason = "no result" if res is None else str(res.failure)
                reasons.add(reason)
                log.warning("%s: held-out simulation %s failed (%s); it is left out of evaluation",
                            self.name, params[i].tolist(), reason)
                continue
            keep.append(i)
            inputs.append(res.samples.inputs)
            targets.append(res.samples.targets)
        if not keep:
            raise ProblemError(f"{self.name}: every held-out simulation failed: "
                               f"{'; '.join(sorted(reasons)[:3])[:400]}")
        self._eval = (params[keep], torch.stack(inputs), torch.stack(targets))
        self._save_eval_cache()


def resolve_callable(path: str) -> Callable[..., Any]:
    """The object at ``"pkg.mod:function"`` (or ``"pkg.mod.function"``, ``"pkg.mod:Cls.f"``)."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"fn must look like 'package.module:function', got {path!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"fn {path!r} is not callable")
    return obj


class SolverTimeout(ProblemError, TimeoutError):
    """A user's solver ran past ``timeout_s`` (executors record it as a ``timeout`` failure)."""


def call_with_timeout(fn: Callable[[np.ndarray], Any], arg: np.ndarray, seconds: float) -> Any:
    """``fn(arg)``, or :class:`SolverTimeout` after ``seconds`` (0: wait forever).

    Python cannot stop a function from outside, so the call runs on a daemon thread that is
    abandoned on timeout (it ends with the process); ``executor=process_pool`` kills it instead.
    """
    if seconds <= 0:
        return _solver_call(fn, arg)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _solver_call(fn, arg)
        except BaseException as err:  # re-raised in the caller's thread below
            box["error"] = err

    worker = threading.Thread(target=target, name="user-solver", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise SolverTimeout(f"the solver ran longer than timeout_s={seconds:g}s "
                            f"(params {np.asarray(arg).tolist()})")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _solver_call(fn: Callable[[np.ndarray], Any], arg: np.ndarray) -> Any:
    """``fn(arg)``, a solver's own ``sys.exit`` or ``KeyboardInterrupt`` turned into a failed
    simulation: the run's exit and the user's Ctrl-C are not the solver's to raise. A Ctrl-C
    (SIGINT) or SIGTERM that arrives during the call still stops the run."""
    interrupted = threading.Event()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    if main:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        return fn(arg)
    except SystemExit as err:
        raise SolverFailed(f"the solver called sys.exit({err.code!r})") from None
    except KeyboardInterrupt as err:
        if interrupted.is_set() or isinstance(err, Terminated):
            raise
        raise SolverFailed("the solver raised KeyboardInterrupt") from None
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


@dataclass
class CallableSimulatorConfig(SolverConfig):
    """``fn``: import path of ``f(params [p]) -> frames [n_steps + 1, grid]``; with
    ``vectorized``, ``f(params [n, p]) -> frames [n, n_steps + 1, grid]``."""

    name: str = "callable_sim"
    fn: str = ""
    vectorized: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.fn), "fn", "name the solver, e.g. problem.fn=my_package.solver:run")


class CallableSimulator(UserSimulator):
    """A Python function as a simulator (see the module docstring for an example)."""

    config_class = CallableSimulatorConfig  # the schema of its config group option (config.py)

    config: CallableSimulatorConfig  # type: ignore[assignment]

    def __init__(self, config: CallableSimulatorConfig | None = None, **overrides: Any) -> None:
        fn = overrides.get("fn")
        self._fn: Callable[..., Any] | None = fn if callable(fn) else None
        self._given = self._fn is not None
        if callable(fn):
            overrides["fn"] = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', fn)}"
        cfg = (CallableSimulatorConfig(**overrides) if config is None
               else dataclasses.replace(config, **overrides))
        super().__init__(cfg)
        if self._fn is None:
            try:
                resolve_callable(cfg.fn)  # here, so a typo fails before the run, naming the key
            except (ImportError, AttributeError, ValueError) as err:
                raise ConfigError("fn", f"cannot load the solver {cfg.fn!r}: {err}") from None

    @property
    def fn(self) -> Callable[..., Any]:
        """The solver function (imported on first use, so workers import it themselves)."""
        if self._fn is None:
            self._fn = resolve_callable(self.config.fn)
        return self._fn

    def solve_one(self, row: np.ndarray) -> Any:
        return call_with_timeout(self.fn, row, self.config.timeout_s)

    def solve_many(self, rows: np.ndarray) -> list[Any]:
        if not self.config.vectorized:
            return super().solve_many(rows)
        frames = np.asarray(call_with_timeout(self.fn, rows, self.config.timeout_s),
                            dtype=np.float64)
        if frames.ndim != 3 or frames.shape[0] != len(rows):
            raise ProblemError(f"{self.name}: a vectorized solver must return [n, n_steps + 1, grid] "
                             f"with n = {len(rows)}, got {frames.shape}")
        return list(frames)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the import path, not an imported function (workers import it themselves),
        unless the function was handed over directly."""
        state = dict(self.__dict__)
        if not self._given:
            state["_fn"] = None
        return state


@dataclass
class CommandLineSimulatorConfig(SolverConfig):
    """``command``: template with ``{params}``, ``{output}``, ``{workdir}``; ``shell`` runs the
    command through ``/bin/sh``; past ``timeout_s`` its process group is killed."""

    name: str = "command_sim"
    command: str = ""
    work_dir: str = ""
    keep_files: bool = False
    shell: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.command.strip()), "command", "give the command line, e.g. "
              "problem.command='python solver.py --params {params} --out {output}'")
        fields, error = template_fields(self.command)
        check(error is None, "command", f"is not a valid template: {error}")
        unknown = sorted(fields - set(PLACEHOLDERS))
        check(not unknown, "command",
              f"unknown placeholders {unknown}: use {{params}}, {{output}}, {{workdir}} "
              "(write literal braces as {{ and }})")


def template_fields(command: str) -> tuple[set[str], str | None]:
    """Placeholder names used in a ``str.format`` template, and the parse error if any."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(command) if f is not None}, None
    except ValueError as err:
        return set(), str(err)


class SolverFailed(ProblemError):
    """The external solver exited with an error or produced no output."""


def read_output(path: str) -> np.ndarray:
    """The ``.npy`` array a command wrote, or SolverFailed saying what is there instead (no
    file, a pipe or other non-file, text, a pickle, a truncated array)."""
    if not os.path.lexists(path):
        raise SolverFailed(f"the command exited normally but wrote no {os.path.basename(path)}")
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block np.load for ever
        raise SolverFailed(f"{os.path.basename(path)} is not a regular file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        with open(path, "rb") as handle:
            head = handle.read(6)
        what = ("a truncated or damaged .npy file" if head == b"\x93NUMPY"
                else "a pickle" if head[:1] == b"\x80" else "not a .npy file")
        raise SolverFailed(f"{os.path.basename(path)} is {what} ({type(err).__name__}: "
                           f"{str(err)[:120]}); write it with numpy.save") from None


def anchor_paths(command: str, root: str) -> str:
    """``command`` with each argument that names a file or directory relative to ``root`` (the
    directory the run was started from) made absolute: the command runs in a fresh working
    directory per simulation, where ``./solver`` or ``solver.py`` would not be found."""
    parts = shlex.split(command)
    anchored = [os.path.join(root, part) if "{" not in part and not os.path.isabs(part)
                and os.path.exists(os.path.join(root, part)) else part for part in parts]
    return shlex.join(anchored) if anchored != parts else command


#: whether a command runs in a session of its own (so a timeout can kill all it started). A
#: process-pool worker turns this off: its commands stay in the worker's process group, which
#: the pool kills on a timeout and when it closes, so none outlives the run.
COMMAND_OWN_SESSION = True


def keep_commands_in_this_process_group() -> None:
    """Run later commands in the caller's process group (see :data:`COMMAND_OWN_SESSION`)."""
    global COMMAND_OWN_SESSION
    COMMAND_OWN_SESSION = False


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill a command: its whole session when it has one, else the process itself."""
    with contextlib.suppress(ProcessLookupError):
        if COMMAND_OWN_SESSION:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()


def run_command(argv: list[str] | str, cwd: str, timeout_s: float, shell: bool) -> None:
    """Run a command (in its own session, see :data:`COMMAND_OWN_SESSION`); on timeout kill it
    and raise TimeoutError; on a non-zero exit raise :class:`SolverFailed` with stderr's last
    line."""
    with subprocess.Popen(argv, cwd=cwd, shell=shell, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=COMMAND_OWN_SESSION,
                          text=True) as proc:
        try:
            _, err = proc.communicate(timeout=timeout_s or None)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            raise SolverTimeout(f"the command ran longer than timeout_s={timeout_s:g}s") from None
        except BaseException:
            _kill(proc)
            raise
    if proc.returncode != 0:
        last = (err or "").strip().splitlines()[-1:] or ["(no stderr)"]
        raise SolverFailed(f"exit status {proc.returncode}: {last[0][:300]}")


class CommandLineSimulator(UserSimulator):
    """An external program as a simulator: parameters in a JSON file, trajectory out as .npy."""

    config_class = CommandLineSimulatorConfig  # the schema of its config group option (config.py)

    config: CommandLineSimulatorConfig  # type: ignore[assignment]

    def __init__(self, config: CommandLineSimulatorConfig | None = None, **overrides: Any) -> None:
        cfg = (CommandLineSimulatorConfig(**overrides) if config is None
               else dataclasses.replace(config, **overrides))
        check(bool(cfg.command.strip()), "command",
              "give the solver's command line, "
              "e.g. 'python solver.py --params {params} --out {output}'")
        if not cfg.shell:
            cfg = dataclasses.replace(cfg, command=anchor_paths(cfg.command, os.getcwd()))
        super().__init__(cfg)

    def solve_one(self, row: np.ndarray) -> Any:
        root = self.config.work_dir or None
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix="sim-", dir=root)
        paths = {"params": os.path.join(workdir, "params.json"),
                 "output": os.path.join(workdir, "output.npy"), "workdir": workdir}
        try:
            with open(paths["params"], "w") as handle:
                json.dump({"params": [float(v) for v in row]}, handle)
            if self.config.shell:
                quoted = {k: shlex.quote(v) for k, v in paths.items()}
                argv: list[str] | str = self.config.command.format(**quoted)
            else:
                argv = [part.format(**paths) for part in shlex.split(self.config.command)]
            run_command(argv, workdir, self.config.timeout_s, self.config.shell)
            return read_output(paths["output"])
        except ProblemError as err:
            where = (f"its files are kept in {workdir}" if self.config.keep_files
                     else "problem.keep_files=true keeps a simulation's files")
            raise type(err)(f"{err} ({where})") from None
        finally:
            if not self.config.keep_files:
                shutil.rmtree(workdir, ignore_errors=True)
