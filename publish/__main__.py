"""python -m publish --pool POOL --out RELEASE [--push --repo org/vs-sonar] — see --help."""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from vs_sonar_dataset.build.release import add_build_options
from vs_sonar_dataset.core.errors import CHECKS_FAILED_EXIT, UserError, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m publish",
        description="Build a release from a pool and verify it (--pool), then optionally push it to the Hugging "
        "Face Hub (--push). Only a release that verify passed, with files unchanged since, is pushed, in one "
        "atomic commit; pushing identical content makes no commit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--pool", help="pool directory: build and verify a release from it")
    p.add_argument("--run", help="run directory of `vs-sonar run`: publish its verified release")
    p.add_argument("--out", help="release folder (written with --pool; pushed as it is without)")
    add_build_options(p)
    p.add_argument("--model-checks", choices=["existing", "run", "skip"], default="existing",
                   help="SONAR alignment / round-trip checks (see `vs-sonar verify --help`)")
    p.add_argument("--push", action="store_true", help="push the verified release to the Hub")
    p.add_argument("--repo", default="org/vs-sonar", help="Hub dataset repo id")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--force", action="store_true", help="replace a README.md on the Hub that vs-sonar did not write")
    p.add_argument("--allow-synthetic", action="store_true", help="allow pushing a release of a synthetic pool")
    p.add_argument("--allow-fixture-models", action="store_true",
                   help="allow pushing a release made by fixture models (only to a test endpoint)")
    p.add_argument("--retries", type=int, default=4, metavar="N",
                   help="after a transient Hub error (connection refused, dropped or timed out; HTTP 429 or 5xx), "
                   "retry the whole push up to N more times; safe, since a failed push commits nothing. Other "
                   "errors (401, 403, 404, ...) fail at once")
    p.add_argument("--retry-wait", type=float, default=2.0, metavar="SECONDS",
                   help="pause before the first retry; each next pause is twice as long")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="give up on a Hub request that sends nothing back for this long (then it is retried)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def check_repo_id(repo: str) -> None:
    """A Hub repo id (namespace/name: letters, digits, '-', '_', '.'), else one line."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise UserError(f"--repo {repo!r}: not a Hub repo id ({str(e).splitlines()[0]})") from None
    if repo.count("/") != 1:
        raise UserError(f"--repo {repo!r}: expected NAMESPACE/NAME, such as org/vs-sonar")


def run(args) -> int:
    from vs_sonar_dataset.build.card import render_card
    from vs_sonar_dataset.build.release import RELEASE_MANIFEST, build_release, build_settings
    from vs_sonar_dataset.verify.checks import summary, verify_release

    check_repo_id(args.repo)  # before any work: the repo id goes into the card, and the push needs it
    if args.run:
        from vs_sonar_dataset.run import release_of_run

        args.out = str(release_of_run(args.run))
    if not args.out:
        raise UserError("--out RELEASE is required (or --run RUN_DIR)")
    release = Path(args.out)
    if args.pool:
        s = build_settings(args)
        digests = {}  # pool rows hashed while building, so verify does not read the pool twice
        started = time.monotonic()
        build_release(args.pool, release, s.configs, s.seed, s.rows_per_file, repo_id=args.repo,
                      fixture_models=s.fixture_models, pool_digests=digests, settings=s)
        report = verify_release(release, args.pool, args.model_checks, pool_digests=digests)
        print(summary(report, time.monotonic() - started))
        render_card(release, json.loads((release / RELEASE_MANIFEST).read_text()), report)  # with the results
        if not report["passed"]:
            return CHECKS_FAILED_EXIT
    elif not args.push:
        raise UserError("nothing to do: give --pool POOL to build and verify, and/or --push to publish")
    if args.push:
        from .hub import push_release

        result = push_release(release, args.repo, private=args.private, revision=args.revision, force=args.force,
                              allow_synthetic=args.allow_synthetic, allow_fixture=args.allow_fixture_models,
                              retries=args.retries, retry_wait=args.retry_wait, timeout=args.timeout)
        if result["commit"] is None:
            print(f"{args.repo} is already up to date: no commit made")
        else:
            print(f"pushed {len(result['added'])} files, deleted {len(result['deleted'])} to {args.repo} "
                  f"in commit {result['commit'][:12]}: {result['url']}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # the Hub client logs every request and retry; the retries and the result are ours to say
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    return run_command("publish", lambda: run(args), output=args.out)


if __name__ == "__main__":
    sys.exit(main())
