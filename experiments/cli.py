"""The ``edgebatch`` command: one entry point, a subcommand per job, each with ``--help``.

``edgebatch run [--multirun] [overrides]`` is ``python -m experiments.run``
(Hydra; its configs ship inside the package, ``pkg://conf``, so it works
from any folder); ``collect``, ``plot``, ``compare``, ``calibrate``,
``quickstart`` and ``testbed`` are the modules of the same names. Like
``python -m``, every subcommand can import the current folder's modules (a
user's own policies named by ``_target_``). ``edgebatch <overrides>``
without a subcommand is ``edgebatch run <overrides>``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

#: subcommand -> (module whose ``main(argv)`` runs it, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("experiments.run", "run one configuration, or sweep with --multirun (Hydra overrides; --help lists the config groups)"),
    "collect": ("experiments.collect", "gather a sweep's runs into one table, with 95% intervals over repeats"),
    "plot": ("experiments.plot", "figures over runs and sweeps (PNG and SVG)"),
    "compare": ("experiments.compare", "the simulator against live: errors per metric beside the live spread"),
    "calibrate": ("experiments.calibrate", "measure the live executors and write conf/profile/calibrated.yaml"),
    "quickstart": ("experiments.quickstart", "the main job (make demo): calibration, sim against live, a batching tour"),
    "testbed": ("live.deploy.testbed", "deploy a live run across hosts (docs/DEPLOY.md)"),
}


def usage() -> str:
    """The top-level help: every subcommand and its one line."""
    width = max(map(len, COMMANDS))
    lines = ["usage: edgebatch <command> [arguments]   (edgebatch <command> --help for a command's own)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "edgebatch <overrides> (no command) is edgebatch run <overrides>, e.g. edgebatch rate_rps=20 num_requests=500"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``edgebatch <command> ...`` to the command's module; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in COMMANDS:
        command, args = args[0], args[1:]
    elif args[0].startswith("-") and args[0] not in ("--multirun", "-m", "--cfg", "-c", "--info", "--config-dir", "-cd"):
        print(f"error: unknown option {args[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    elif "=" not in args[0] and not args[0].startswith("-"):
        from spec.validation import did_you_mean

        near = did_you_mean(args[0], COMMANDS)
        hint = f"; did you mean {near!r}?" if near else ""
        print(f"error: {args[0]!r} is not a command: one of {', '.join(COMMANDS)}{hint}", file=sys.stderr)
        return 2
    else:
        command = "run"
    if os.getcwd() not in sys.path:  # as python -m: the user's own modules (policies) from the current folder
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(COMMANDS[command][0])
    saved = sys.argv
    sys.argv = [f"edgebatch {command}", *args]  # argparse's usage line names the subcommand
    from experiments.errors import config_errors_exit

    try:
        with config_errors_exit(args):  # a config error in any command (compare's overrides, ...): three lines at most, status 2
            status = module.main(args)
    finally:
        sys.argv = saved
    return status if isinstance(status, int) and not isinstance(status, bool) else 0  # the modules return their tables


if __name__ == "__main__":
    raise SystemExit(main())
