"""`vs-sonar run CONFIG.toml --out RUN_DIR`: source -> embed -> dedup -> build -> model checks -> verify -> card,
each stage in its own environment.

RUN_DIR/
    config.toml          the configuration, with {run_dir} resolved (a later call may bring an edited one)
    run.json             each stage's status, seconds, peak memory (its own process and the processes it waited
                         for; not Ray's actors), log, and what its output was made from
    logs/{stage}.log     everything the stage printed
    logs/ray.log         Ray's lines, when the run starts its own Ray instance (--engine ray without --address)
    fixtures/            models built locally when [run] fixtures asks for them, before the first stage
    candidates/          the source's shards + manifest
    vectors/             embed's shards + manifest (every candidate's vector)
    pool/                dedup's shards + manifest
    release/             the release folder (with model_checks.json, verify_report.json and the final card)

A stage is current when run.json records that its output was made from the present digest of each config
table it reads and of each input it reads, and the output is still what it wrote. Only stages that are not
current run: an edited [dedup] re-runs dedup and what follows and reuses the vectors; a stage that stopped
half-way with the same settings resumes; one whose settings changed starts over.
"""

import argparse
import contextlib
import importlib
import json
import logging
import os
import pkgutil
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .build.release import RELEASE_MANIFEST
from .core.config import config_of, parse_document, table_digest, with_overrides
from .core.console import StageConsole
from .core.envs import REPO_ROOT, python_for
from .core.errors import CHECKS_FAILED_EXIT, UserError
from .core.outputs import check_output_dir
from .core.shards import sha256_file, write_json_atomic
from .engines import add_engine_arguments, check_engine_arguments, engine_flags
from .engines.ray_instance import RunInstance
from .pipeline import STAGES, Stage

HELP = ("run every stage from the source to a verified release; re-runs only the stages whose settings or "
        "inputs changed, and resumes an interrupted one. Then publish with python -m publish --run")
log = logging.getLogger("vs_sonar.run")


def fixture_environments() -> dict[str, str]:
    """fixture name -> the environment that builds it: every module of fixtures/ that names an ENVIRONMENT
    (`python -m vs_sonar_dataset.fixtures.NAME OUT` builds it into OUT)."""
    from . import fixtures

    found = {}
    for info in pkgutil.iter_modules(fixtures.__path__):
        module = importlib.import_module(f"{fixtures.__name__}.{info.name}")
        if hasattr(module, "ENVIRONMENT"):
            found[info.name] = module.ENVIRONMENT
    return found


class Runner:
    def __init__(self, config_path, run_dir, gsm8k: str | None = None, verbose: bool = False,
                 engine: str = "local", address: str | None = None, overrides: list[str] | None = None):
        """engine, address: for the stages that take --engine (the same files either way, so the engine is not
        part of what a stage's output is made from)."""
        self.run_dir = Path(run_dir).resolve()
        self.source = Path(config_path)
        self.verbose = verbose
        self.config_path = self.run_dir / "config.toml"
        self.state_path = self.run_dir / "run.json"
        self.gsm8k = gsm8k
        self.source_flags: list[str] = []
        self.config_flag = ["--config", str(self.config_path)]
        self.engine, self.address = engine, address
        self.engine_flags = engine_flags(engine, address)
        self.ray_instance = None  # the run's own local Ray instance (--engine ray without --address)
        self.overrides = list(overrides or [])  # --set TABLE.KEY=VALUE, applied to the file's tables

    def path(self, name: str) -> Path:
        return self.run_dir / name

    # -- bookkeeping
    def prepare(self) -> None:
        if not self.source.is_file():
            raise UserError(f"{self.source}: configuration file not found")
        try:
            text = self.source.read_text(encoding="utf-8").replace("{run_dir}", str(self.run_dir))
        except UnicodeDecodeError as e:
            raise UserError(f"{self.source}: not UTF-8 text (byte {e.start}); save the configuration as UTF-8") \
                from None
        check_output_dir(self.run_dir, "run")
        document = parse_document(text, str(self.source))  # every table checked before the run folder changes
        if self.overrides:  # the run folder's copy holds the values the stages read
            document, text = with_overrides(document, self.overrides, str(self.source))
        self.config = config_of(document, f"{self.source}{' with --set' if self.overrides else ''}")
        self.check_fixture_names()  # before the run folder is made
        self.resolve_gsm8k(document.get("source", {}))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        if not self.config_path.exists() or self.config_path.read_text() != text:
            self.config_path.write_text(text)
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"stages": {}}

    def resolve_gsm8k(self, values: dict) -> None:
        """--gsm8k, else $VS_SONAR_GSM8K, wins over [source] gsm8k (vs_gsm8k only), as an absolute path when it
        is one: the source runs in another folder, and the digest must name what it reads."""
        from .core.config import parse
        from .sources.vs_gsm8k.problems import resolve_gsm8k_location

        gsm8k = resolve_gsm8k_location(self.gsm8k)
        if not gsm8k or self.config["source"].kind != "vs_gsm8k":
            if self.gsm8k:
                raise UserError(f"--gsm8k is for [source] kind = \"vs_gsm8k\", not {self.config['source'].kind!r}")
            return
        if Path(gsm8k).exists():
            gsm8k = str(Path(gsm8k).resolve())
        self.config["source"] = parse("source", {**values, "gsm8k": gsm8k}, f"{self.source} (--gsm8k)")
        self.source_flags = ["--gsm8k", gsm8k]

    def record(self, stage: str, **entry) -> None:
        self.state["stages"][stage] = {**self.state["stages"].get(stage, {}), **entry,
                                       "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json_atomic(self.state_path, self.state)

    def made_from(self, stage: Stage) -> dict:
        """The digests a stage's output depends on: its config tables and its inputs' records."""
        inputs = {}
        for name in stage.inputs:
            record = self.path(next(s.record for s in STAGES if s.name == name))
            inputs[name] = sha256_file(record) if record.is_file() else None
        made_from = {"tables": {t: table_digest(self.config[t]) for t in stage.tables}, "inputs": inputs}
        if stage.extra:
            made_from["extra"] = stage.extra(self)
        return made_from

    def why_run(self, stage: Stage, made_from: dict) -> str | None:
        """None when the stage is current, else why it runs."""
        entry = self.state["stages"].get(stage.name, {})
        before = entry.get("made_from")
        if before is None:
            return "not run yet"
        changed = [f"[{t}]" for t, d in made_from["tables"].items() if before["tables"].get(t) != d]
        changed += [f"{n} output" for n, d in made_from["inputs"].items() if before["inputs"].get(n) != d]
        changed += [f"its input {n}" for n, d in made_from.get("extra", {}).items()
                    if before.get("extra", {}).get(n) != d]
        if changed:
            return f"{', '.join(changed)} changed"
        if entry.get("status") != "done":
            return f"resuming after: {entry.get('status')}"
        record = self.path(stage.record)
        if not record.is_file() or sha256_file(record) != entry.get("output_sha256"):
            return "its output changed or is missing"
        if stage.name == "verify":
            from .verify.checks import report_is_current

            if not report_is_current(self.path("release")):
                return "release files changed since the last verify"
        return None

    def execute(self, name: str, environment: str | None, args: list[str], ok_codes=(0,)) -> tuple[float, int]:
        """Run one command in its environment; returns its seconds and its peak resident memory in MiB. All it
        prints goes to logs/{name}.log; the terminal shows its progress bar and its last line (everything with
        --verbose)."""
        cmd = [python_for(environment), "-m", "vs_sonar_dataset.cli", *args]
        log_path = self.run_dir / "logs" / f"{name}.log"
        console = StageConsole(sys.stdout, self.verbose)
        started = time.time()
        with open(log_path, "ab") as logfile:
            logfile.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                logfile.write(chunk)
                console.feed(chunk)
            _, status, usage = os.wait4(proc.pid, 0)  # wait4: the rusage of this command alone
            code = proc.returncode = os.waitstatus_to_exitcode(status)
        last = console.close()
        seconds = time.time() - started
        if code not in ok_codes:
            self.record(name, status=f"failed (exit {code})", seconds=round(seconds, 1), log=f"logs/{name}.log")
            raise UserError(f"stage {name} failed (exit {code}){': ' + last if last else ''}; see {log_path}. "
                            "Fix the cause and run the same command again to resume")
        peak_mb = usage.ru_maxrss // 1024  # KiB on Linux
        console.line(f"stage {name}: done in {seconds:.0f} s, peak {peak_mb / 1024:.1f} GiB"
                     f"{': ' + last if last else ''}")
        return seconds, peak_mb

    def check_fixture_names(self) -> None:
        known = fixture_environments() if self.config["run"].fixtures else {}
        for name in self.config["run"].fixtures:
            if name not in known:
                raise UserError(f"{self.source}: [run] fixtures: unknown fixture {name!r} "
                                f"(known: {', '.join(sorted(known))})")

    def fixtures(self) -> None:
        """Build the fixture models the configuration asks for, unless built already."""
        settings = self.config["run"]
        known = fixture_environments() if settings.fixtures else {}
        for name in settings.fixtures:
            environment, module = known[name], f"vs_sonar_dataset.fixtures.{name}"
            out = self.run_dir / "fixtures" / name
            if (out / ".complete").exists():
                continue
            print(f"fixture {name}: building (log: {self.run_dir / 'logs' / f'fixture-{name}.log'})", flush=True)
            cmd = ["-m", module, str(out), *settings.fixture_args.get(name, [])]
            shutil.rmtree(out, ignore_errors=True)
            self.execute_module(f"fixture-{name}", environment, cmd)
            (out / ".complete").write_text("built\n")

    def execute_module(self, name: str, environment: str, cmd: list[str]) -> None:
        log_path = self.run_dir / "logs" / f"{name}.log"
        with open(log_path, "ab") as logfile:
            code = subprocess.run([python_for(environment), *cmd], cwd=REPO_ROOT, stdout=logfile,
                                  stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise UserError(f"fixture {name} failed (exit {code}); see {log_path}")

    def run(self) -> bool:
        """Returns True when every stage was already current (the release is up to date)."""
        self.prepare()
        with contextlib.ExitStack() as stop_at_exit:
            return self.run_stages(stop_at_exit)

    def run_stages(self, stop_at_exit: contextlib.ExitStack) -> bool:
        # a stage on Ray with work to do: the instance starts now, while the fixtures and earlier stages run
        # (only the stages on Ray are asked: verify's answer reads the release's files, and the loop asks again)
        on_ray_with_work = [s for s in STAGES if self.on_ray(s) and self.why_run(s, self.made_from(s))]
        self.start_ray_instance(stop_at_exit, on_ray_with_work)
        self.fixtures()
        ran = []
        for index, stage in enumerate(STAGES):
            made_from = self.made_from(stage)
            why = self.why_run(stage, made_from)
            if why is None:
                print(f"stage {stage.name}: current, skipped", flush=True)
                continue
            before = self.state["stages"].get(stage.name, {}).get("made_from")
            if before != made_from:
                self.remove_output(stage)  # made from other settings or inputs, or unknown ones: start over
            print(f"stage {stage.name}: running ({why}; log: {self.run_dir / 'logs' / f'{stage.name}.log'})",
                  flush=True)
            self.record(stage.name, status="running", made_from=made_from, log=f"logs/{stage.name}.log")
            self.start_ray_instance(stop_at_exit, STAGES[index:])  # a stage on Ray that was current may run now
            if self.on_ray(stage) and self.ray_instance:  # it joins the instance (waits until it has started)
                self.engine_flags = engine_flags(self.engine, self.ray_instance.address())
            seconds, peak_mb = self.execute(stage.name, self.environment(stage), [stage.name, *stage.args(self)],
                                            stage.ok_codes)
            if not self.path(stage.record).is_file():
                self.record(stage.name, status="failed (no output)", seconds=round(seconds, 1))
                raise UserError(f"stage {stage.name} ended without writing {self.path(stage.record)}; see "
                                f"{self.run_dir / 'logs' / f'{stage.name}.log'}")
            self.record(stage.name, status="done", seconds=round(seconds, 1), peak_rss_mb=peak_mb,
                        output_sha256=sha256_file(self.path(stage.record)))
            ran.append(stage.name)
            if self.ray_instance and not any(self.on_ray(later) for later in STAGES[index + 1:]):
                self.ray_instance.stop()  # its memory (the object store) is free for the stages after it
        return not ran

    def start_ray_instance(self, stop_at_exit: contextlib.ExitStack, stages) -> None:
        """Start the run's own Ray instance (in the background) if one of `stages` is on Ray, no --address was
        given and none is running."""
        if self.ray_instance is None and not self.address and any(self.on_ray(s) for s in stages):
            self.ray_instance = stop_at_exit.enter_context(RunInstance(self.run_dir / "logs" / "ray.log"))

    def on_ray(self, stage: Stage) -> bool:
        return self.engine == "ray" and stage.ray_driver is not None and stage.ray_driver(self.config)

    def environment(self, stage: Stage) -> str | None:
        """Where the stage's command runs: a Ray driver in the main environment, else the stage's own."""
        return None if self.on_ray(stage) else stage.environment(self.config)

    def remove_output(self, stage: Stage) -> None:
        if stage.name == "build":  # a killed build's work folder goes with it
            shutil.rmtree(self.path("release.partial"), ignore_errors=True)
        output = self.path(stage.output)
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            output.unlink()


def release_of_run(run_dir) -> Path:
    release = Path(run_dir) / "release"
    if not (release / RELEASE_MANIFEST).exists():
        raise UserError(f"{run_dir}: no release yet; run `vs-sonar run CONFIG --out {run_dir}` first")
    return release


def add_arguments(parser):
    parser.add_argument("config", help="TOML file with [run], [source], [embed], [dedup], [build], [model_check] "
                        "tables (see configs/)")
    parser.add_argument("--out", required=True, help="run directory (created, or continued when it exists: "
                        "stages whose settings and inputs are unchanged are skipped)")
    parser.add_argument("--gsm8k", help="vs_gsm8k source: a local GSM8K folder or file instead of the "
                        "configuration's `gsm8k`")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", dest="overrides",
                        help="override one key of the configuration without editing the file (repeatable); the "
                        "value as TOML reads it, e.g. --set 'build.configs={\"100\" = 100}'; a number picks an "
                        "entry of a list of tables: --set source.sources.2.max_pairs=1000")
    add_engine_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show every stage's whole output (engine start-up logs included), not only its "
                        "progress and last line")


def main(args) -> int:
    check_engine_arguments(args)
    if args.engine == "ray":  # before the first stage, which may run for hours
        from .engines.ray import preflight

        preflight()
    runner = Runner(args.config, args.out, args.gsm8k, verbose=getattr(args, "verbose", False),
                    engine=args.engine, address=args.address, overrides=args.overrides)
    up_to_date = runner.run()
    release = runner.run_dir / "release"
    from .verify.checks import REPORT

    report = json.loads((release / REPORT).read_text())
    status = "up to date" if up_to_date else "built"
    verdict = "verified" if report["passed"] else f"FAILED verification (see {REPORT})"
    print(f"release {status} at {release}: {verdict}")
    if report["passed"]:
        print(f"publish with: python -m publish --run {args.out} --push --repo ORG/NAME")
    return 0 if report["passed"] else CHECKS_FAILED_EXIT
