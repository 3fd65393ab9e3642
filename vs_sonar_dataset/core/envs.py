"""Where each stage runs. vLLM and SONAR need different torch builds, so each model stage has its own
virtual environment beside the main one; a command for a stage re-runs itself there when the current
interpreter cannot import the stage's model library."""

import importlib.util
import os
import sys
from pathlib import Path

from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_GSM8K = REPO_ROOT.parent / "shared" / "data" / "gsm8k"  # a local GSM8K copy beside the checkout, if any

# stage -> (module that proves the environment fits, default venv folder, variable that overrides the python)
STAGE_ENVS = {
    "generate": ("vllm", ".venv-generate", "VS_SONAR_GENERATE_PYTHON"),
    "embed": ("sonar", ".venv-embed", "VS_SONAR_EMBED_PYTHON"),
}


def stage_python(stage: str) -> str:
    """The interpreter of the stage's environment."""
    _, venv, variable = STAGE_ENVS[stage]
    python = os.environ.get(variable) or str(REPO_ROOT / venv / "bin" / "python")
    if not Path(python).exists():
        raise UserError(f"the {stage} environment is missing ({python}); run scripts/setup.sh "
                        f"or set {variable} to a python that has it")
    return python


def runs_here(stage: str) -> bool:
    """True when this interpreter can run the stage itself."""
    module = STAGE_ENVS[stage][0]
    return importlib.util.find_spec(module) is not None


def python_for(stage: str | None) -> str:
    """This interpreter when it can run the stage (or for stage None: the main environment), else the stage's."""
    return sys.executable if stage is None or runs_here(stage) else stage_python(stage)
