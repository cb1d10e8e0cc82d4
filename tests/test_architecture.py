"""The contracts of docs/architecture.md: schemas found from each option's class, one list of
non-defining keys, simulation ids kept by the pool, declared capabilities instead of probes."""

from __future__ import annotations

import ast
import inspect
import re
from importlib.resources import files
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

import nearpole_exp.runner as runner_module
from nearpole_exp.checkpoint import config_fingerprint
from nearpole_exp.config.discovery import COMPONENT_GROUPS, component_schemas
from nearpole_exp.config.schemas import NON_DEFINING_KEYS, is_non_defining, override_exclude_keys
from nearpole_exp.models.base import ModelCapabilities, capabilities
from nearpole_exp.models.mlp import MLP
from nearpole_exp.models.rational import RationalModel
from nearpole_exp.pool import NO_SIM, Pool
from nearpole_exp.problems.base import Samples


def test_every_shipped_option_has_the_schema_its_class_declares():
    schemas = component_schemas()
    root = files("nearpole_exp.conf")
    seen = 0
    for group in COMPONENT_GROUPS:
        for entry in root.joinpath(group).iterdir():
            node = OmegaConf.create(entry.read_text())
            defaults = list(node.get("defaults") or [])
            if not defaults or not str(defaults[0]).startswith("base_"):
                continue
            schema = schemas[group][str(defaults[0])[len("base_"):]]
            seen += 1
            if "_target_" in node:
                assert schema.__dataclass_fields__["_target_"].default == node["_target_"]
    assert seen >= 30
    # ogas/model and ogas/data come from the OGAS breeder's declared parts
    assert schemas["ogas/model"]["ddpm"].__name__ == "DDPMConfig"
    assert schemas["ogas/data"]["default"].__name__ == "DataConfig"
    # signature schemas leave out what the runner supplies
    assert "in_features" not in schemas["model"]["mlp"].__dataclass_fields__
    assert "bounds" not in schemas["ogas/breeder"]["static"].__dataclass_fields__


def test_one_list_of_non_defining_keys():
    assert is_non_defining("logger.mode") and is_non_defining("hydra/launcher")
    assert is_non_defining("trainer.num_threads") and not is_non_defining("trainer.lr")
    assert not is_non_defining("seed") and not is_non_defining("loggerish")
    excluded = override_exclude_keys()
    assert "seed" in excluded and set(NON_DEFINING_KEYS) <= set(excluded)
    assert {"logger.project", "hydra.sweep.dir"} <= set(excluded)
    cfg = OmegaConf.create({"seed": 1, "trainer": {"lr": 0.1, "num_threads": 2},
                            "logger": {"mode": "offline"}})
    assert config_fingerprint(cfg) == {"seed": "1", "trainer.lr": "0.1"}


def test_pool_keeps_each_samples_simulation_id_through_rejection_eviction_and_state():
    pool = Pool(capacity=6)
    x = torch.tensor([[0.0], [float("nan")], [2.0]])
    pool.add(Samples(x, x, torch.arange(3)), sim_ids=torch.tensor([7, 8, 9]))
    assert pool.sim_ids.tolist() == [7, 9] and pool.source.tolist() == [0, 2]
    # a simulation with several samples (rows of one trajectory), then a sampler's proposal
    y = torch.arange(6.0)[:, None]
    pool.add(Samples(y, y, torch.tensor([0, 0, 0, 1, 1, 1])), sim_ids=torch.tensor([10, 11]))
    pool.add(Samples(y[:1], y[:1], torch.tensor([0])))
    assert len(pool) == 6  # capacity: the two oldest samples are gone
    assert pool.sim_ids.tolist() == [10, 10, 11, 11, 11, NO_SIM]
    assert pool.point_sim_ids.tolist() == [7, 8, 9, 10, 11, NO_SIM]
    assert torch.equal(pool.point_sim_ids[pool.source], pool.sim_ids)
    state = pool.state_dict()
    restored = Pool(capacity=6)
    restored.load_state_dict(state)
    assert torch.equal(restored.sim_ids, pool.sim_ids)
    # a state written before the pool kept sim ids: rebuilt from the per-point table
    old = {**state, "data": {k: v for k, v in state["data"].items() if k != "sim_id"}}
    legacy = Pool(capacity=6)
    legacy.load_state_dict(old)
    assert torch.equal(legacy.sim_ids, pool.sim_ids)


def test_model_capabilities_are_declared_not_probed():
    assert capabilities(RationalModel(in_features=1, out_features=1)) == ModelCapabilities(True, True,
                                                                                          True)
    assert capabilities(MLP(in_features=1, out_features=1)) == ModelCapabilities(False, False)

    class WithPQ(nn.Linear):  # has a pq method but declares nothing: a plain regressor
        def pq(self, x):
            return x, x

    assert capabilities(WithPQ(1, 1)) == ModelCapabilities()


def test_the_runner_asks_components_instead_of_probing_them():
    source = inspect.getsource(runner_module)
    assert "hasattr(" not in source
    assert len(re.findall(r"\bgetattr\(", source)) <= 2
    assert ".kind" not in source.replace("loss_kind", "")


#: docs/architecture.md's layers, top to bottom: a module imports only from its own package (its
#: first name under nearpole_exp) or from a lower layer.
LAYERS = [
    {"__main__"},
    {"app", "help", "compare", "dashboard"},
    {"sweep_signals"},
    {"overrides", "finished"},
    {"runner"},
    {"build", "verdicts"},
    {"acquisition"},
    {"sampling", "execution", "optim"},
    {"pool"},
    {"problems", "models", "reporting", "checkpoint", "joblock", "callbacks", "stop_signals"},
    {"config", "designs", "metrics", "rng", "atomic", "adamw"},
    {"errors"},
]


def _imports(path: Path, package: Path) -> set[str]:
    """The nearpole_exp modules a file imports, as their first name under the package
    (``from nearpole_exp import metrics`` is the module ``metrics``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nearpole_exp"):
            parts = node.module.split(".")
            names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names
                     if a.name.startswith("nearpole_exp.")]
        found.update(n for n in names if (package / n).exists() or (package / f"{n}.py").exists())
    return found


def test_imports_follow_the_layers_of_the_architecture() -> None:
    package = Path(runner_module.__file__).parent
    layer = {name: k for k, names in enumerate(LAYERS) for name in names}
    modules = {p.stem if p.parent == package else p.relative_to(package).parts[0]
               for p in package.rglob("*.py") if p.name != "__init__.py"}
    assert modules <= set(layer), f"modules missing from LAYERS: {sorted(modules - set(layer))}"
    upward = []
    for path in package.rglob("*.py"):
        own = path.stem if path.parent == package else path.relative_to(package).parts[0]
        if own == "__init__":
            continue
        upward += [f"{path.relative_to(package)} imports {name}" for name in _imports(path, package)
                   if name != own and layer[name] <= layer[own]]
    assert not upward, upward
