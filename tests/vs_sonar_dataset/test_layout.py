"""The house shows the pipeline: one folder per stage in the order data flows, no import circles, no import
against the flow, few top-level modules, and each stage's command in the folder of its name."""

import importlib.util
import subprocess
import sys
import textwrap

from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.pipeline import STAGES

spec = importlib.util.spec_from_file_location("import_graph", REPO_ROOT / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)
PACKAGE_DIR = REPO_ROOT / "vs_sonar_dataset"


def test_no_import_circles_and_nothing_against_the_flow():
    edges = import_graph.graph(PACKAGE_DIR)
    assert import_graph.circles(edges) == []
    assert import_graph.against_the_flow(edges) == []


def test_the_checks_find_a_circle_and_an_import_against_the_flow(tmp_path):
    """The two checks above can fail: a package with both faults is caught."""
    package = tmp_path / "vs_sonar_dataset"
    files = {"__init__.py": "", "core/__init__.py": "", "embed/__init__.py": "", "build/__init__.py": "",
             "build/card.py": "", "core/x.py": "from ..embed import stage\n",
             "embed/stage.py": "def later():\n    from ..core import x\n    from ..build import card\n"}
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    edges = import_graph.graph(package)
    assert import_graph.circles(edges) == [["vs_sonar_dataset.core.x", "vs_sonar_dataset.embed.stage"]]
    reached = {(m, t) for m, t, _ in import_graph.against_the_flow(edges)}
    assert ("vs_sonar_dataset.core.x", "vs_sonar_dataset.embed.stage") in reached
    assert ("vs_sonar_dataset.embed.stage", "vs_sonar_dataset.build.card") in reached
    assert ("vs_sonar_dataset.core.x", "vs_sonar_dataset.build.card") in reached  # through embed


def test_at_most_eight_top_level_modules():
    top = sorted(p.name for p in PACKAGE_DIR.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 8, top


def test_each_stage_command_lives_in_the_folder_of_its_name():
    for stage in STAGES:
        folder = stage.module.split(".")[1]
        assert folder in (stage.name.replace("-", "_"), stage.name + "s"), (stage.name, stage.module)


def test_the_script_reports_a_clean_tree():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "import_graph.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert "0 circles, 0 imports against the flow" in result.stdout


def test_the_public_api_keeps_its_import_paths():
    code = textwrap.dedent("""\
        import sys
        import vs_sonar_dataset
        assert "vs_sonar_dataset.consume.loading" not in sys.modules  # imported on first use
        from vs_sonar_dataset import (Stats, denormalize, interpolate, load_embeddings, load_stats, normalize,
                                      __version__)
        from vs_sonar_dataset.torch_data import EmbeddingDataset
        from vs_sonar_dataset import EmbeddingDataset as same
        assert same is EmbeddingDataset and callable(load_embeddings) and callable(interpolate)
        import builder, publish
        assert builder.VsSonar.BUILDER_CONFIGS
        print("ok")
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "ok", result.stderr


def test_pytest_collects_every_test_folder():
    """pytest skips folders whose names match norecursedirs (by default `build`, the build stage's tests)."""
    import fnmatch
    import tomllib

    skipped = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
        "norecursedirs"]
    folders = {p.name for p in (REPO_ROOT / "tests").rglob("*") if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders and not {f for f in folders for pattern in skipped if fnmatch.fnmatch(f, pattern)}
