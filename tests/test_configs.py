"""Every option of every config group composes and builds; bad configs fail naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from nearpole_exp.config.validate import validate
from nearpole_exp.errors import ConfigError
from nearpole_exp.runner import Runner

from .conftest import TINY, group_options, subprocess_env

FEW_SIMS = ["trainer.initial_points=4", "trainer.points_per_round=4", "trainer.batch_size=8"]
SMALL_2D = ["problem.grid=16", "problem.n_steps=2", "problem.n_eval=4", *FEW_SIMS]
# Options that only make sense with another choice: the companion overrides they need.
COMPANIONS: dict[str, list[str]] = {
    "model=cnn1d": ["problem=burgers1d", "trainer=online"],
    "model=linear_rational": ["problem=rr_ik"],
    "model=fno2d": ["problem=ks2d", "trainer=online", *SMALL_2D],
    "model=unet2d": ["problem=gray_scott2d", "trainer=online", *SMALL_2D],
    "problem=ks2d": ["model=unet2d", "trainer=online", *SMALL_2D],
    "problem=gray_scott2d": ["model=fno2d", "trainer=online", *SMALL_2D],
    "experiment=ks2d": SMALL_2D,
    "experiment=gray_scott2d": SMALL_2D,
    "problem=custom": ["problem._target_=tests.byo_problem.TwoPoles"],
    "problem=callable": ["problem.fn=tests.sleep_solver:solve"],
    "problem=command": ["problem.command='python tests/cli_solver.py --params {params} --out {output}'"],
    "executor=inprocess": ["experiment=landscape", *FEW_SIMS],
    "executor=process_pool": ["experiment=landscape", *FEW_SIMS],
    "executor=submitit": ["experiment=landscape", *FEW_SIMS],
    "executor=dask": ["experiment=landscape", *FEW_SIMS, "executor.workers=1"],
    "ogas/model=ddpm": ["ogas/breeder=ogas"],
    "ogas/data=default": ["ogas/breeder=ogas"],
}
# Where each group's built component lives, and the dataclass of values it was built with (None
# for components built from keyword arguments, which a misspelt key cannot reach unnoticed).
BUILT = {
    "model": lambda r: None,
    "sampler": lambda r: r.selection.sampler.config if hasattr(r.selection.sampler, "config") else None,
    "curriculum": lambda r: getattr(r.selection.curriculum, "config", None),
    "gradient": lambda r: getattr(r.gradient, "config", None),
    "diagnostics": lambda r: getattr(r.monitor, "config", None),
    "ogas/breeder": lambda r: breeder_values(r.acquisition.breeder),
    "ogas/model": lambda r: r.acquisition.breeder.config.model,
    "ogas/data": lambda r: r.acquisition.breeder.config.data,
    "executor": lambda r: None,
    "trainer": lambda r: r.tc,
    "logger": lambda r: None,
}


def companions(group: str, option: str) -> list[str]:
    return COMPANIONS.get(f"{group}={option}", [])


@pytest.mark.parametrize("option", group_options("problem"))
def test_problem_options_build(composer, option: str) -> None:
    cfg = composer([*TINY, f"problem={option}", *companions("problem", option)])
    validate(cfg)
    problem = instantiate(cfg.problem, _convert_="all")
    assert problem.bounds.shape[1] == 2
    assert problem.kind in ("pole", "simulator")


def breeder_values(breeder: object) -> object:
    """The dataclass a breeder's own option fills: OGAS keeps its three parts together."""
    config = getattr(breeder, "config", None)
    return getattr(config, "breeder", config)


def as_plain(value: object) -> object:
    return list(value) if isinstance(value, tuple | list) else value


@pytest.mark.parametrize("group", list(BUILT))
def test_every_option_reaches_its_component_and_runs(composer, group: str) -> None:
    """Each option composes, validates, builds and runs a round to a finite loss; where its
    component keeps a config, every value of the option is the value the component holds (no key
    is accepted and dropped on the way)."""
    for option in group_options(group):
        cfg = composer([*TINY, "trainer.rounds=1", "trainer.steps_per_round=3", "trainer.eval_every=1",
                        f"{group}={option}", *companions(group, option)], name=option)
        validate(cfg)
        runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
        held = BUILT[group](runner)
        node = OmegaConf.to_container(OmegaConf.select(cfg, group.replace("/", ".")), resolve=True)
        if held is not None:
            for key, value in node.items():
                if not key.startswith("_"):
                    assert as_plain(getattr(held, key)) == as_plain(value), (option, key)
        summary = runner.run()
        assert summary["status"] == "completed", (option, summary.get("error"))
        assert summary["step"] == 3 and summary["train/skipped_steps"] == 0, option


@pytest.mark.parametrize("group", ["experiment", "debug", "hparams_search"])
def test_presets_compose(composer, group: str) -> None:
    if group == "hparams_search":
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="optional extra [optuna]")
    for option in group_options(group):
        cfg = composer([f"{group}={option}"], name=option)
        validate(cfg)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.batch_size=-3", "trainer.batch_size"),
        ("trainer.lr=0", "trainer.lr"),
        ("trainer.loss=l1", "trainer.loss"),
        ("trainer.device=tpu", "trainer.device"),
        ("logger.mode=sometimes", "logger.mode"),
        ("seed=-1", "seed"),
        ("seed=9223372036854775808", "seed"),
        ("trainer.lr=inf", "trainer.lr"),
        ("optimizer.weight_decay=nan", "optimizer.weight_decay"),
        ("trainer.batch_size=1000000000000", "trainer.batch_size"),
        ("trainer.initial_points=100000000000", "trainer.initial_points"),
        ("problem=burgers1d problem.n_eval=10000000000", "problem.n_eval"),
        ("trainer.max_skipped_fraction=1.5", "trainer.max_skipped_fraction"),
        ("+unknown_top_key=1", "unknown_top_key"),
        ("problem.low=-inf", "problem.low"),
        ("problem.high=nan", "problem.high"),
    ],
)
def test_out_of_range_values_name_the_key(composer, override: str, key: str) -> None:
    cfg = composer([*TINY, *override.split()])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == key


@pytest.mark.parametrize(
    ("override", "error", "fragment"),
    [
        ("sampler=importnce", ConfigCompositionException, "sampler/importnce"),
        ("trainer.batch_size=abc", ConfigCompositionException, "trainer.batch_size"),
        ("trainer.batchsize=3", ConfigCompositionException, "batchsize"),
        ("problem.colour=red", ConfigCompositionException, "colour"),
        ("problem.pole=near", ConfigCompositionException, "problem.pole"),
    ],
)
def test_composition_rejects_bad_overrides(composer, override: str, error: type, fragment: str) -> None:
    with pytest.raises(error) as err:
        composer([*TINY, override])
    text = str(err.value) + str(err.value.__cause__ or "")
    assert fragment in text


def test_presets_override_the_primary_config(composer) -> None:
    cfg = composer(["experiment=burgers"])
    assert cfg.task_name == "burgers"
    assert cfg.problem._target_.endswith("Burgers1D")


def test_empty_pool_config_is_refused(composer) -> None:
    cfg = composer([*TINY, "trainer.initial_points=0", "trainer.points_per_round=0"])
    with pytest.raises(ConfigError, match=r"trainer\.initial_points"):
        validate(cfg)


def test_schema_types_are_enforced_on_assignment(composer) -> None:
    cfg = composer(TINY)
    with pytest.raises((ValidationError, ConfigKeyError)):
        cfg.trainer.rounds = "many"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [("sampler=importnce", "Did you mean 'importance'? Options: active, hybrid, importance,"),
     ("samplr=importance", "samplr: no such config group or key. Did you mean 'sampler'?"),
     # found by Hydra: same exit status, one line with the closest real key
     ("trainer.lrr=1", "trainer.lrr: is not a setting of trainer; did you mean trainer.lr?"),
     ("trainer.batch_size=-3", "trainer.batch_size"),
     # only the built problem reveals it: rational1d has one input, no room for two context dims
     ("model=linear_rational", "model.context_dims"),
     ("problem=custom problem._target_=collections.OrderedDict", "problem._target_"),
     # a simulator with the default (pole) model: the error names the model that fits
     ("problem=burgers1d", "model=cnn1d")],
)
def test_cli_bad_config_exits_2_with_a_clear_line_on_stderr(cli, tmp_path: Path, override: str,
                                                            fragment: str) -> None:
    """Every configuration error, ours or Hydra's: exit 2, the message whole on stderr (no
    wrapping), no traceback, no internal ``base_*`` schema offered as an option."""
    code, out, err = cli(*override.split(), f"hydra.run.dir={tmp_path}")
    assert code == 2, out + err
    assert any(fragment in ln for ln in err.splitlines()), err
    assert "Traceback" not in out + err and "base_" not in err


@pytest.mark.parametrize("override", ["trainer.lrr=1", "trainer.batch_size=-3"])
def test_a_real_process_exits_2_on_a_bad_config(tmp_path: Path, override: str) -> None:
    """The same through a new interpreter, once for an error Hydra finds and once for ours."""
    proc = subprocess.run(
        [sys.executable, "-m", "nearpole_exp", override, "logger=none", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(), check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert any(override.split("=")[0] in ln for ln in proc.stderr.splitlines()), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_saved_job_config_reruns_to_the_same_result_and_cfg_resolve_prints(tmp_path: Path) -> None:
    """``--config-path <job>/.hydra --config-name config`` (the saved config has lost its
    schemas) reruns the job bit for bit; ``--cfg job --resolve`` prints without a job directory."""
    first, again = tmp_path / "first", tmp_path / "again"
    base = [sys.executable, "-m", "nearpole_exp"]
    common = ["logger.enabled=false", "trainer.progress=false", "trainer.plots=false"]
    run = dict(capture_output=True, text=True, timeout=180, env=subprocess_env(), check=True)
    printed = subprocess.run([*base, *TINY, *common, f"hydra.run.dir={first}"], **run).stdout
    # what ran in a few lines (not the whole tree), the end table titled with it; all in the log
    head = printed.split("CONFIG")[0].splitlines()
    assert "CONFIG" not in printed and len(printed.splitlines()) < 40
    assert head[0].startswith("nearpole_exp: debug=default trainer.progress=false")
    assert "options: debug=default problem=rational1d model=rational" in printed
    assert "breeder/" not in printed and "ogas/model" not in printed  # nothing that does not apply
    logged = (first / "nearpole_exp.log").read_text()
    assert "round 2/2, step 40" in logged and head[0] in logged and "status" in logged
    assert "problem" in (first / "config_tree.log").read_text()
    # a relative path, as a user types it from the folder above the job
    rerun = subprocess.run([*base, "--config-path", "first/.hydra", "--config-name", "config",
                            *common, f"hydra.run.dir={again}"], cwd=tmp_path, **run).stdout
    assert rerun.count("job directory:") == 1  # printed once, not once more by Hydra's logger
    assert "options: debug=default problem=rational1d" in rerun  # the original job's choices
    assert not (again / "__main__.log").exists() and (again / "nearpole_exp.log").exists()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (first, again))
    assert a["status"] == b["status"] == "completed"
    assert a["eval/mse"] == b["eval/mse"] and a["eval/relerr_median/B0"] == b["eval/relerr_median/B0"]
    shown = subprocess.run([*base, "--cfg", "job", "--resolve"], **run).stdout
    assert "output_dir: null" in shown and "trainer:" in shown
    from nearpole_exp import load_run  # a CLI job directory back in Python

    loaded = load_run(first)
    assert loaded.problem.evaluate(loaded.predict)["eval/mse"] == pytest.approx(a["eval/mse"])


def test_override_check_knows_every_shipped_group_and_stays_out_of_the_way() -> None:
    from nearpole_exp.overrides import group_options, override_error

    groups = group_options()
    assert {"sampler", "ogas/breeder", "experiment", "problem"} <= set(groups)
    assert not any(o.startswith("base_") for options in groups.values() for o in options)
    assert override_error(["sampler=importance", "ogas/breeder=breed,ogas", "seed=3",
                           "trainer.lr=0.1", "+experiment=landscape", "~hparams_search"]) is None
    assert "Did you mean 'breed'" in override_error(["ogas/breeder=uniform,bred"])
    # options a user's own config directory may add are not second-guessed
    assert override_error(["sampler=mine", "hydra.searchpath=[file://conf]"]) is None


def test_help_lists_real_options_and_launchers_without_torch_and_completion_works() -> None:
    code = ("import runpy, sys; sys.argv = ['nearpole_exp', '--help']; "
            "runpy.run_module('nearpole_exp', run_name='__main__'); "
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=subprocess_env(), check=True).stdout
    assert "TORCH False" in out and "base_" not in out
    for line in ("problem: what is learnt", "  * rational1d", "ogas/breeder: ", "    ogas ",
                 "Launchers for -m", "    parallel", "    slurm ", "nearpole-exp"):
        assert line in out, line
    for group in ("problem", "model", "sampler", "curriculum", "gradient", "executor", "trainer",
                  "logger", "experiment", "debug", "ogas/model", "ogas/data"):
        assert f"\n{group}: " in out, group
    env = {**subprocess_env(), "COMP_LINE": "nearpole-exp sampler=imp", "COMP_POINT": "25"}
    code = ("import runpy, sys; sys.argv = ['nearpole_exp', '-sc', 'query=bash']; "
            "runpy.run_module('nearpole_exp', run_name='__main__'); "
            "print('TORCH', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True).stdout
    assert "sampler=importance_zeroproof" in done and "TORCH False" in done
    env["COMP_LINE"], env["COMP_POINT"] = "nearpole-exp sampler=", "21"
    listed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120, check=True).stdout
    assert "sampler=uniform" in listed and "base_" not in listed  # no schema the CLI refuses


def test_option_files_hold_only_what_differs_from_their_class() -> None:
    """One source of defaults: a component option's YAML never repeats a value its class already
    has as default (the class is the default; an option is a documented difference)."""
    from hydra.core.config_store import ConfigStore

    from nearpole_exp.config.discovery import COMPONENT_GROUPS, option_files, schema_name

    store = ConfigStore.instance()
    repeated = []
    for group, option, node in option_files((*COMPONENT_GROUPS, "trainer", "logger")):
        name = schema_name(node)
        if name is None:
            continue
        schema = OmegaConf.to_container(store.load(f"{group}/base_{name}.yaml").node)
        values = OmegaConf.to_container(node)
        repeated += [f"{group}/{option}: {key}" for key, value in values.items()
                     if key not in ("defaults", "_target_") and schema.get(key, object()) == value]
    assert not repeated, repeated


def test_a_breeder_built_in_python_is_the_shipped_preset(composer) -> None:
    """``OGASBreeder(bounds)`` (as the README shows it) and ``ogas/breeder=ogas`` are one breeder."""
    from nearpole_exp.acquisition.ogas.breeder import OGASBreeder
    from nearpole_exp.build import build_breeder

    cfg = composer(["ogas/breeder=ogas"])
    bounds = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    shipped, plain = build_breeder(cfg.ogas, bounds), OGASBreeder(bounds)
    try:
        assert shipped.config == plain.config
    finally:
        shipped.close()
        plain.close()


def test_job_directory_names_stay_short_and_distinct():
    from nearpole_exp.config.discovery import SLUG_MAX, slug

    assert slug("ogas/breeder=ogas,seed=1") == "ogas.breeder=ogas_seed=1"
    long_a = ",".join(f"ogas.breeder.key_{i}=value_{i}" for i in range(12))
    long_b = long_a.replace("value_11", "value_12")
    assert len(slug(long_a)) == SLUG_MAX and slug(long_a) != slug(long_b)
    assert slug(long_a).startswith("ogas.breeder.key_0=value_0_")
