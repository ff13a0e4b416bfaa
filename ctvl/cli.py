"""The ``ctvl`` command. Thin: parse options, call the library, print.

Each command group lives in ``ctvl/commands/<group>.py`` and registers itself on the app given to its
``register(app)``. Library imports happen inside the command functions so ``ctvl --help`` stays fast.
Any :class:`ctvl.errors.CtvlError` becomes one line on stderr (``error: ...``) and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ctvl.errors import CtvlError

app = typer.Typer(
    name="ctvl",
    help="3D CT vision-language toolkit: read CT, tokenize, report, synthesize, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_STATE = {"debug": False}

# sub-command groups shared by several command modules (``ctvl data ...``, ``ctvl bench ...``)
GROUPS: dict[str, typer.Typer] = {
    name: typer.Typer(help=help_, no_args_is_help=True)
    for name, help_ in (
        ("data", "Make and inspect datasets."),
        ("train", "Train ctvl models."),
        ("bench", "Benchmarks that print JSON and compare against a baseline in the same run."),
        ("eval", "Evaluate generated reports and volumes."),
    )
}
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)

# command modules under ctvl/commands; each defines
#   register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None
COMMAND_MODULES: tuple[str, ...] = (
    "io_cmds",
    "data_cmds",
    "tokenizer_cmds",
    "bench_cmds",
    "eval_cmds",
    "report_cmds",
    "synthesis_cmds",
    "synth_eval_cmds",
    "app_cmds",
    "demo_cmds",
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _STATE["debug"] = debug


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ctvl.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ctvl.commands.{name}":
                continue  # group not written yet
            raise
        module.register(app, GROUPS)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False)
    except CtvlError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exit codes
        return int(exc.code or 0)
    except Exception as exc:  # click usage errors and anything unexpected: one line, no traceback
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click/typer usage errors
            exc.show()
            return int(exc.exit_code)
        if type(exc).__name__ == "Exit" and hasattr(exc, "exit_code"):
            return int(exc.exit_code)
        if debug:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: unexpected {type(exc).__name__}: {msg} (rerun with --debug for details)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
