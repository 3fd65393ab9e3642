"""`vs-sonar` in a process whose last stderr line says whether the command loaded torch: the commands that hand
work to another environment or drive it on Ray must not (about 1 s to import it and 0.5 s to unload it, on
2 cores, for nothing)."""

import subprocess
import sys

from vs_sonar_dataset.core.envs import REPO_ROOT

PROBE = ("import sys\nfrom vs_sonar_dataset import cli\ntry:\n    code = cli.main()\nfinally:\n"
         "    print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)")
NO_TORCH = "torch loaded: False"


def vs_sonar_probed(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
