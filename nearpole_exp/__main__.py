"""``python -m nearpole_exp``: the Hydra entry point (config shipped in ``nearpole_exp.conf``)."""

from __future__ import annotations

import os
import sys

# Before torch is imported: idle OpenMP threads sleep instead of spinning. On a shared or small
# CPU, spinning made a default run 5x slower (measured on the 2-core development machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra
from omegaconf import DictConfig

from nearpole_exp.overrides import override_error, unknown_key_message

HELP_FLAGS = ("--help", "-h")
COMPLETION_FLAGS = ("--shell-completion", "-sc")
PRINT_FLAGS = ("--cfg", "-c", "--info", "-i")

if any(a in COMPLETION_FLAGS for a in sys.argv[1:]):
    # completing a word composes names and values only: placeholder schemas, no torch import
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from nearpole_exp.config.discovery import register_configs

    register_configs(placeholders=True)
    _listed = ConfigLoaderImpl.get_group_options

    def _options(self: ConfigLoaderImpl, *args: object, **kwargs: object) -> list[str]:
        """A group's options without the ``base_*`` schemas (the CLI refuses them)."""
        return [o for o in _listed(self, *args, **kwargs) if not o.startswith("base_")]

    ConfigLoaderImpl.get_group_options = _options  # type: ignore[method-assign]
elif any(a in PRINT_FLAGS or a.startswith(("--cfg=", "--info=")) for a in sys.argv[1:]):
    # printing a config composes it with the cached schemas (no torch) when they are this package's
    from nearpole_exp.config.discovery import register_configs

    register_configs(cached=True)
elif not any(a in HELP_FLAGS for a in sys.argv[1:]):
    # the schemas and resolvers Hydra composes with (this imports torch); also in launcher workers
    from nearpole_exp import app  # noqa: F401


@hydra.main(version_base="1.3", config_path="pkg://nearpole_exp.conf", config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from nearpole_exp.app import task

    return task(cfg)


def one_line(err: BaseException) -> str:
    """An error's message on one line (Hydra's span several)."""
    text = str(err)
    if err.__cause__ is not None and str(err.__cause__) not in text:
        text = f"{text}: {err.__cause__}"
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


CONFIG_PATH_FLAGS = ("--config-path", "-cp")


def rerun_arguments(args: list[str]) -> list[str]:
    """Arguments of a rerun from a job's saved config (``--config-path <job>/.hydra
    --config-name config``): the path made absolute (Hydra reads a relative one from this
    package's folder), and this tool's Hydra settings, which the saved config does not hold
    (its logging, job name and sweep comparison)."""
    out, given = list(args), False
    for i, arg in enumerate(out):
        if arg in CONFIG_PATH_FLAGS and i + 1 < len(out):
            out[i + 1], given = os.path.abspath(out[i + 1]), True
        elif arg.startswith(tuple(f"{f}=" for f in CONFIG_PATH_FLAGS)):
            flag, _, path = arg.partition("=")
            out[i], given = f"{flag}={os.path.abspath(path)}", True
    if given:
        out += ["hydra.searchpath=[pkg://nearpole_exp.conf]", "hydra/job_logging=rich",
                "hydra/callbacks=compare", "hydra.job.name=nearpole_exp"]
    return out


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``nearpole-exp``). ``--help`` prints without importing torch.

    Every job ends through the task's :class:`~nearpole_exp.app.JobGuard`, which decides its exit
    code; an exception that reaches this function was raised by Hydra before or between jobs
    (an unknown group, a value of the wrong type, an override it cannot parse): a configuration
    error, printed on one line with exit code 2.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in HELP_FLAGS for a in args):
        from nearpole_exp.help import help_text

        print(help_text())
        return
    args = rerun_arguments(args)
    problem = override_error(args)
    if problem is not None:
        print(f"Invalid config: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if any(a in ("-m", "--multirun") for a in args):
        from nearpole_exp.sweep_signals import install_sweep_stop

        install_sweep_stop()
    saved_argv, saved_full = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [sys.argv[0], *args]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's own errors reach us instead of exiting 1
    try:
        _main()
    except FileExistsError as err:  # Hydra could not make the job directory
        print(f"Invalid config: hydra.run.dir (or hydra.sweep.dir): {err.filename} exists and is "
              "not a directory (a file or a dangling link); choose another directory",
              file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:  # Hydra could not make the job directory's path
        if err.filename is None:
            print(f"Invalid config: {one_line(err)}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"Invalid config: hydra.run.dir (or hydra.sweep.dir, paths.output, task_name): {err.strerror}: "
              f"{str(err.filename)[:120]}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:
        text = one_line(err)
        print(f"Invalid config: {unknown_key_message(text) or text}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv
        if saved_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full


if __name__ == "__main__":
    main()
