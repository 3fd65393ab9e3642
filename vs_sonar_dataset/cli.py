"""`vs-sonar`: the factory's command line. Each subcommand lives in its own module that exposes
HELP, add_arguments(parser) and main(args) -> exit code, and imports its heavy libraries inside main."""

import argparse
import importlib
import logging
import os
import sys

from .core.envs import runs_here, stage_python
from .core.errors import run_command
from .pipeline import STAGES

# every stage's command, in pipeline order, then the tools around them: name -> module. A command runs in
# the environment its module names (ENVIRONMENT, or environment(args) where a plug-in decides)
COMMANDS = {**{stage.name: stage.module for stage in STAGES},
            "run": "vs_sonar_dataset.run", "synth-pool": "vs_sonar_dataset.fixtures.synth",
            "export": "vs_sonar_dataset.consume.export"}
ALIASES = {"source": ["generate"]}  # the source command's first name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vs-sonar",
        description="Build an embedding dataset: texts from a source (Verbalized-Sampling instructions on vLLM, a "
        "text corpus, preference-pair prompts), their vectors from an encoder (SONAR, sentence-transformers, "
        "Hugging Face models), semantic dedup, nested configs, verification and a Hub-ready release.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if not e.name or not e.name.startswith("vs_sonar_dataset"):
                raise
            continue  # command not part of this checkout
        p = sub.add_parser(name, aliases=ALIASES.get(name, []), help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def action() -> int:
        module = args._module
        stage = module.environment(args) if hasattr(module, "environment") else getattr(module, "ENVIRONMENT", None)
        if stage and stage != "main" and not runs_here(stage):
            python = stage_python(stage)
            logging.getLogger("vs_sonar").debug("running %s in %s", args.command, python)
            os.execv(python, [python, "-m", "vs_sonar_dataset.cli", *argv])
        return args._module.main(args)

    return run_command(f"vs-sonar {args.command}", action, output=getattr(args, "out", None))


if __name__ == "__main__":
    sys.exit(main())
