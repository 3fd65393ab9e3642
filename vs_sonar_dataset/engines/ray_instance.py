"""The local Ray instance of a `vs-sonar run --engine ray` without --address, which each stage on Ray joins
(a stage that starts its own instance pays Ray's start and stop, about 4 s on 2 cores, each time).

It lives in a process of its own (`python -m vs_sonar_dataset.engines.ray_instance`), so that it starts while
the stages before the first on Ray run and stops while those after the last run, and Ray's lines go to the
run's logs/ray.log, not the console. The process answers the instance's address on its stdout (and the
authentication mode Ray chose, which the stage commands need to join it), then holds the instance until its stdin
closes: when the run stops it, or ends in any way (a killed run closes it too).
"""

import json
import os
import subprocess
import sys

from ..core.errors import UserError

STOP_TIMEOUT_S = 60
# Ray turns token authentication on for a local instance where ~/.ray/auth_token exists, in the starting process's
# environment only; a process that joins by address without it is refused
AUTH_MODE = "RAY_AUTH_MODE"


class RunInstance:
    def __init__(self, log_path):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log)
        self._address: str | None = None

    def address(self) -> str:
        """The instance's address, once it has started. From then on, the processes this one starts have the
        settings they need to join it."""
        if self._address is None:
            line = self.process.stdout.readline().decode().strip()
            if not line:
                self.process.wait()
                raise UserError(f"the run's Ray instance did not start: {last_line(self.log_path)}; see "
                                f"{self.log_path}")
            answer = json.loads(line)
            os.environ.update(answer["join_env"])
            self._address = answer["address"]
        return self._address

    def stop(self) -> None:
        """Let it stop, without waiting."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()

    def close(self) -> None:
        """Stop it and wait until it has."""
        self.stop()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def last_line(path) -> str:
    with open(path, errors="replace") as log:
        lines = [line.strip() for line in log if line.strip()]
    return lines[-1] if lines else "it printed nothing"


def serve() -> int:
    """Start the instance, answer its address, hold it until stdin closes."""
    from .ray import ray_session, require_ray

    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # Ray's lines, stdout's too, go where stderr goes: the log
    try:
        ray = require_ray()
        with ray_session(ray, None):
            address = ray.get_runtime_context().gcs_address
            print(f"=== local Ray instance at {address}, for the run's stages on Ray", file=sys.stderr, flush=True)
            join_env = {AUTH_MODE: os.environ[AUTH_MODE]} if AUTH_MODE in os.environ else {}
            answer.write(json.dumps({"address": address, "join_env": join_env}) + "\n")
            answer.flush()
            sys.stdin.buffer.read()
        print(f"=== stopped the Ray instance at {address}", file=sys.stderr, flush=True)
    except UserError as e:
        print(e, file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # Ctrl-C reaches the whole run: the runner says what happened
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(serve())
