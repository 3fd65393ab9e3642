"""`vs-sonar run CONFIG.toml --out RUN_DIR`: generate -> embed -> build -> model checks -> verify, each stage in
its own environment, resuming where a previous call stopped.

RUN_DIR/
    config.toml          the configuration, with {run_dir} resolved; a later call must use the same file
    run.json             each stage's status, seconds and log
    logs/{stage}.log     everything the stage printed
    fixtures/            models built locally when the configuration asks for them ([run] fixtures: the tiny
                         random Llama, SmolLM2 from its PyPI package, the tiny SONAR pair), each just before
                         the first stage that needs it
    candidates/          generate's shards + manifest + summary.json
    pool/                embed's shards + manifest
    release/             the release folder (with model_checks.json and verify_report.json)

A stage whose output is complete and current is skipped, so a second call after a crash continues, and a call
after success reports that the release is up to date.
"""

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from .config import load_table
from .console import StageConsole
from .envs import REPO_ROOT, python_for
from .errors import UserError
from .outputs import check_output_dir
from .release import MODEL_CHECKS, RELEASE_MANIFEST, build_settings
from .shards import MANIFEST, read_manifest, sha256_file, write_json_atomic
from .splits import parse_size

HELP = "run every stage from GSM8K to a verified release (resumable); then publish with python -m publish --run"
log = logging.getLogger("vs_sonar.run")

# fixture name -> (environment that builds it and the stage that needs it, module that builds it into a folder)
FIXTURES = {"tiny_llama": ("generate", "vs_sonar_dataset.fixtures.tiny_llama"),
            "smollm2": ("generate", "vs_sonar_dataset.fixtures.smollm2"),
            "tiny_sonar": ("embed", "vs_sonar_dataset.fixtures.tiny_sonar")}
RUN_KEYS = {"fixtures", "fixture_args"}


class Runner:
    def __init__(self, config_path, run_dir, gsm8k: str | None = None, verbose: bool = False):
        self.run_dir = Path(run_dir).resolve()
        self.verbose = verbose
        self.source = Path(config_path)
        self.gsm8k = gsm8k
        self.state_path = self.run_dir / "run.json"
        self.config = self.run_dir / "config.toml"

    # -- bookkeeping
    def prepare(self) -> None:
        if not self.source.is_file():
            raise UserError(f"{self.source}: configuration file not found")
        text = self.source.read_text().replace("{run_dir}", str(self.run_dir))
        check_output_dir(self.run_dir, "run")
        if self.config.exists() and self.config.read_text() != text:
            raise UserError(f"{self.run_dir} was started with another configuration; use a new --out, or the "
                            f"same configuration to resume")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        if not self.config.exists():
            self.config.write_text(text)
        self.run_settings = load_table(self.config, "run", RUN_KEYS)  # a typo is an error before any work
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"stages": {}}
        self.state["config_sha256"] = sha256_file(self.config)

    def record(self, stage: str, status: str, seconds: float = 0.0) -> None:
        self.state["stages"][stage] = {"status": status, "seconds": round(seconds, 1),
                                       "log": f"logs/{stage}.log", "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json_atomic(self.state_path, self.state)

    def execute(self, stage: str, env_stage: str | None, args: list[str], ok_codes=(0,)) -> None:
        """Run one stage in its environment. All it prints goes to logs/{stage}.log; the terminal shows its
        progress bar and its last line (everything with --verbose)."""
        cmd = [python_for(env_stage), *args]
        log_path = self.run_dir / "logs" / f"{stage}.log"
        console = StageConsole(sys.stdout, self.verbose)
        console.line(f"stage {stage}: running (log: {log_path})")
        started = time.time()
        self.record(stage, "running")
        with open(log_path, "ab") as logfile:
            logfile.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                logfile.write(chunk)
                console.feed(chunk)
            code = proc.wait()
        last = console.close()
        seconds = time.time() - started
        if code not in ok_codes:
            self.record(stage, f"failed (exit {code})", seconds)
            raise UserError(f"stage {stage} failed (exit {code}){': ' + last if last else ''}; see {log_path}. "
                            "Fix the cause and run the same command again to resume")
        self.record(stage, "done", seconds)
        console.line(f"stage {stage}: done in {seconds:.0f} s{': ' + last if last else ''}")

    # -- stages
    def fixtures(self, stage: str) -> None:
        """Build the fixture models the configuration asks for that `stage` needs, unless built already."""
        extra = self.run_settings.get("fixture_args", {})
        for name in self.run_settings.get("fixtures", []):
            if name not in FIXTURES:
                raise UserError(f"[run] fixtures: unknown fixture {name!r} (known: {', '.join(FIXTURES)})")
            env_stage, module = FIXTURES[name]
            out = self.run_dir / "fixtures" / name
            if env_stage != stage or (out / ".complete").exists():
                continue
            self.execute(f"fixture-{name}", env_stage, ["-m", module, str(out), *extra.get(name, [])])
            (out / ".complete").write_text("built\n")

    def complete(self, directory: Path, kind: str) -> bool:
        return (directory / MANIFEST).exists() and read_manifest(directory, kind).complete

    def run(self) -> bool:
        """Returns True when every stage was already done (the release is up to date)."""
        self.prepare()
        cli = ["-m", "vs_sonar_dataset.cli"]
        candidates, pool, release = self.run_dir / "candidates", self.run_dir / "pool", self.run_dir / "release"
        did = []
        if not self.complete(candidates, "candidates"):
            self.fixtures("generate")
            gsm8k = ["--gsm8k", self.gsm8k] if self.gsm8k else []
            self.execute("generate", "generate", [*cli, "generate", str(self.config), "--out", str(candidates), *gsm8k])
            did.append("generate")
        if not self.complete(pool, "pool"):
            self.fixtures("embed")
            self.execute("embed", "embed", [*cli, "embed", str(candidates), "--out", str(pool),
                                            "--config", str(self.config)])
            did.append("embed")
        if not self.release_is_current(release, pool):
            self.execute("build", None, [*cli, "build", str(pool), "--out", str(release), "--config", str(self.config)])
            did.append("build")
        if not (release / MODEL_CHECKS).exists():
            self.fixtures("embed")  # model checks load the same encoder and its decoder
            # exit 1 means checks ran and failed: verify reports it; anything else is a crash
            self.execute("model-check", "embed", [*cli, "model-check", str(release), "--config", str(self.config)],
                         ok_codes=(0, 1))
            did.append("model-check")
        from .verify import report_is_current

        if did or not report_is_current(release):
            self.execute("verify", None, [*cli, "verify", str(release), "--pool", str(pool)])
        return not did

    def release_is_current(self, release: Path, pool: Path) -> bool:
        """The release was built from this pool with these build settings."""
        manifest_path = release / RELEASE_MANIFEST
        if not manifest_path.exists():
            return False
        manifest = json.loads(manifest_path.read_text())
        wanted = build_settings(SimpleNamespace(config=self.config))  # what `vs-sonar build --config` would use
        return (manifest["pool"]["manifest_sha256"] == sha256_file(pool / MANIFEST)
                and manifest["seed"] == wanted["seed"]
                and manifest["configs"] == {k: parse_size(v) for k, v in wanted["configs"].items()})


def release_of_run(run_dir) -> Path:
    release = Path(run_dir) / "release"
    if not (release / RELEASE_MANIFEST).exists():
        raise UserError(f"{run_dir}: no release yet; run `vs-sonar run CONFIG --out {run_dir}` first")
    return release


def add_arguments(parser):
    parser.add_argument("config", help="TOML file with [run], [generate], [embed], [build] tables "
                        "(see configs/demo.toml and configs/release.toml)")
    parser.add_argument("--out", required=True, help="run directory (created, or resumed when it exists)")
    parser.add_argument("--gsm8k", help="local GSM8K folder or file instead of the configuration's `gsm8k` "
                        "(the Hub's openai/gsm8k unless it says otherwise)")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show every stage's whole output (engine start-up logs included), not only its "
                        "progress and last line")


def main(args) -> int:
    runner = Runner(args.config, args.out, args.gsm8k, verbose=args.verbose)
    up_to_date = runner.run()
    release = runner.run_dir / "release"
    from .verify import REPORT

    report = json.loads((release / REPORT).read_text())
    status = "up to date" if up_to_date else "built"
    verdict = "verified" if report["passed"] else f"FAILED verification (see {REPORT})"
    print(f"release {status} at {release}: {verdict}")
    if report["passed"]:
        print(f"publish with: python -m publish --run {args.out} --push --repo ORG/NAME")
    return 0 if report["passed"] else 1
