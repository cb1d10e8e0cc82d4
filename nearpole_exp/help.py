"""``--help``: every config group with a line on what it decides, its real options (internal
``base_*`` schemas left out) each with the first line of its YAML's comment, and the launchers.
Read from the packaged config files only, so it prints without importing torch."""

from __future__ import annotations

from importlib.resources import files

from nearpole_exp.overrides import group_options, primary_config

GROUPS = {
    "experiment": "presets that set several groups at once",
    "debug": "a tiny run, an overfit-one-batch check, a profile of one round",
    "problem": "what is learnt: a target with poles, a PDE simulator, a landscape, your own solver",
    "model": "the model (surrogate) being trained",
    "sampler": "which pool samples each batch trains on (active/hybrid also label new points)",
    "curriculum": "far → mid → near bands of the pool over training",
    "gradient": "the rational model's gradient near Q = 0: exact, or bounded where |Q| < δ",
    "optimizer": "how the objective is minimised: AdamW or SGD per batch, or full-batch L-BFGS",
    "scheduler": "the learning-rate schedule of the step-size optimizers",
    "polish": "after each round, the fit taken to the objective's optimum: exact solve or L-BFGS",
    "diagnostics": "the near-pole sampling monitor (diagnostics.jsonl)",
    "ogas/breeder": "which points or simulation parameters get labelled next",
    "ogas/model": "the OGAS breeder's DDPM (used by ogas/breeder=ogas only)",
    "ogas/data": "the OGAS reservoir and signal processing (ogas/breeder=ogas only)",
    "executor": "where simulations run: in one batch, asynchronously, worker processes, Slurm, Dask",
    "trainer": "the loop's budget and cadences",
    "logger": "Weights & Biases on or off (local files are always written)",
    "callbacks": "additions to the loop without editing it: early stopping, a profiler, your own",
    "paths": "where files go: run and sweep directories, solvers' scratch, a cache",
    "hparams_search": "an Optuna search over a sampler's settings (-m)",
    "local": "your machine's own defaults (conf/local/default.yaml, optional)",
}
# Which option to pick, as the benchmarks measured it (BENCHMARKS.md); printed under the group.
ADVICE = {
    "sampler": [
        "exact labels: uniform. The default fit (AdamW, then the exact solve of the rational",
        "model's objective) reaches round-off near every pole whatever the batches.",
        "noisy labels: importance_tilted (2.7-13.6x closer near the poles at relative noise",
        "<= 1e-4, 4-5 of 5 seeds). importance gives uniform's fit (same objective); active,",
        "hybrid and rad did not beat uniform. 1-D and a fixed sample: AAA (scipy) is closer still.",
    ],
    "ogas/breeder": [
        "up to ~16 parameters: breed_adaptive (best on the slab at d 4 and 16, level with the",
        "best on 16-parameter Burgers and KdV; no DDPM, a uniform run's cost). At 64: sobol or",
        "uniform (no breeder beat them). The OGAS preset's DDPM added nothing at any d.",
    ],
}
LAUNCHERS = {
    "basic": "Hydra's default: the jobs of a -m sweep one after another in this process",
}


def first_comment(text: str) -> str:
    """The first comment line of a YAML file that is not a ``@package`` directive."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and "@package" not in stripped:
            return stripped.lstrip("# ").rstrip()
        if stripped and not stripped.startswith("#"):
            break
    return ""


def _described(group: str, option: str, width: int) -> str:
    text = files("nearpole_exp.conf").joinpath(*group.split("/"), f"{option}.yaml").read_text()
    line = first_comment(text)
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def default_options() -> dict[str, str]:
    """Each group's default option, from the primary config's defaults list."""
    from omegaconf import OmegaConf

    found = {}
    for entry in primary_config().get("defaults", []):
        if OmegaConf.is_dict(entry):
            for key, value in entry.items():
                name = str(key).removeprefix("optional ").removeprefix("override ")
                if isinstance(value, str) and not name.startswith("hydra"):
                    found[name] = value
    return found


def help_text(width: int = 100) -> str:
    """The whole ``--help`` text."""
    groups = group_options()
    defaults = default_options()
    order = [g for g in GROUPS if g in groups] + sorted(g for g in groups if g not in GROUPS)
    lines = ["nearpole_exp: train models where the hard part lives in small regions (near-pole",
             "sampling and curriculum; OGAS, online generative active sampling).", "",
             "Usage: python -m nearpole_exp [group=option ...] [key.path=value ...]",
             "       nearpole-exp ...                      (the same, as a console script)",
             "       python -m nearpole_exp -m sampler=uniform,importance seed=0,1,2   (a sweep)",
             "", "Config groups (group=option; * marks the default):"]
    for group in order:
        lines += ["", f"{group}: {GROUPS.get(group, '')}".rstrip(": ")]
        for option in groups[group]:
            mark = "*" if defaults.get(group) == option else " "
            lines.append(f"  {mark} {option:<22} {_described(group, option, width - 27)}".rstrip())
        lines += [f"  which: {line}" if i == 0 else f"         {line}"
                  for i, line in enumerate(ADVICE.get(group, []))]
    launchers = {**LAUNCHERS, **{o: _described("hydra/launcher", o, width - 27)
                                 for o in _launcher_options()}}
    lines += ["", "Launchers for -m (hydra/launcher=...):"]
    lines += [f"  {'*' if name == 'basic' else ' '} {name:<22} {text}".rstrip()
              for name, text in launchers.items()]
    lines += ["", "More: --cfg job (the composed config), --hydra-help (Hydra's own flags),",
              "shell completion: eval \"$(nearpole-exp -sc install=bash)\"; README.md."]
    return "\n".join(lines)


def _launcher_options() -> list[str]:
    folder = files("nearpole_exp.conf").joinpath("hydra", "launcher")
    return sorted(e.name[:-5] for e in folder.iterdir() if e.name.endswith(".yaml"))
