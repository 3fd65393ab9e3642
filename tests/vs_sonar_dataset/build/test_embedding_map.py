import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from vs_sonar_dataset.build.embedding_map import project, write_map

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--use-gl=swiftshader",
                 "--enable-unsafe-swiftshader"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def _clustered(n=120, dim=32, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 3
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def mapped():
    x, labels = _clustered()
    coords, params = project(x, seed=3)
    return x, labels, coords, params


def _rows(labels):
    n = len(labels)
    ids = [f"row-{i:04d}" for i in range(n)]
    # every text carries a distinctive token (zq{i}zq) to recognize it in a hover label; one in ten says "needle"
    texts = [f"Instruction zq{i}zq: {WORDS[labels[i]]} <b>tag</b> & " + ("needle " if i % 10 == 0 else "")
             + "restate the question before computing " * (1 + i % 9) for i in range(n)]
    sources = [["gsm8k", "wikitext"][int(lab) % 2] for lab in labels]
    weights = np.linspace(0.2, 5.0, n)[::-1].copy()
    return ids, texts, sources, weights


def test_project_gives_seeded_3d_coordinates_in_unit_range(mapped):
    x, _, coords, params = mapped
    assert coords.shape == (len(x), 3) and coords.dtype == np.float32
    assert np.allclose(coords.min(axis=0), -1) and np.allclose(coords.max(axis=0), 1)
    again, params_again = project(x, seed=3)
    assert np.array_equal(coords, again) and params == params_again
    assert params["method"] == "umap" and params["metric"] == "cosine" and params["n_components"] == 3
    assert params["random_state"] == 3 and params["n_neighbors"] == 15 and params["min_dist"] == 0.1
    assert params["umap_version"] and json.loads(json.dumps(params)) == params


@pytest.mark.parametrize("n", [0, 1, 3, 6, 16])
def test_project_handles_tiny_splits(n):
    x, _ = _clustered(n=n, seed=n)
    coords, params = project(x, n_neighbors=15)
    assert coords.shape == (n, 3) and np.isfinite(coords).all() and np.abs(coords).max(initial=0) <= 1
    if n < 5:
        assert params["method"] == "pca" and "reason" in params
    else:
        assert params["method"] == "umap" and params["n_neighbors"] == n - 1
        assert params["n_neighbors_requested"] == 15


def test_write_map_is_byte_identical_and_complete(mapped, tmp_path):
    _, labels, coords, _ = mapped
    ids, texts, sources, weights = _rows(labels)
    outs = [write_map(tmp_path / name, "1k", ids=ids, texts=texts, sources=sources, coords=coords,
                      weights=weights, title="vs-sonar 1k train", sampled_from=900) for name in ("a", "b")]
    assert outs[0] == outs[1] == {"html": "map/1k.html", "json": "map/1k.json", "png": "map/1k.png",
                                  "points": len(ids), "color_by": "source"}
    for rel in ("map/1k.html", "map/1k.json", "map/1k.png"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert not list((tmp_path / "a").rglob("*.tmp"))

    doc = json.loads((tmp_path / "a/map/1k.json").read_text())
    assert doc["config"] == "1k" and doc["title"] == "vs-sonar 1k train" and doc["sampled_from"] == 900
    points = doc["points"]
    assert [p["id"] for p in points] == ids and [p["text"] for p in points] == texts
    assert all({"x", "y", "z", "size", "color", "text", "source", "id"} <= p.keys() for p in points)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", p["color"]) for p in points)
    assert {p["label"] for p in points} == {"gsm8k", "wikitext"}
    assert len({p["color"] for p in points}) == 2
    assert all(-1 <= p[axis] <= 1 for p in points for axis in "xyz")
    sizes = [p["size"] for p in points]  # weights fall along the rows: the rarest row first, drawn biggest
    assert sizes[0] == max(sizes) > min(sizes) == sizes[-1] and 3 <= min(sizes) and max(sizes) <= 12

    page = (tmp_path / "a/map/1k.html").read_text()
    assert 'id="search"' in page and 'id="matches"' in page and 'id="map"' in page
    assert "<script src=" not in page and "plotly.js v" in page  # plotly.js inlined, nothing fetched


def test_write_map_colours_by_cluster_without_several_sources(mapped, tmp_path):
    _, labels, coords, _ = mapped
    ids, texts, _, weights = _rows(labels)
    for sources in (None, ["only"] * len(ids)):
        out = write_map(tmp_path, "1k", ids=ids, texts=texts, sources=sources, coords=coords, weights=weights,
                        title="t")
        assert out["color_by"] == "cluster"
        points = json.loads((tmp_path / out["json"]).read_text())["points"]
        assert {p["label"] for p in points} == {f"cluster {i}" for i in range(1, 9)}
        assert len({p["color"] for p in points}) == 8
        assert {p["source"] for p in points} == ({None} if sources is None else {"only"})


def test_write_map_of_a_tiny_split(tmp_path):
    x, labels = _clustered(n=3)
    coords, _ = project(x)
    ids, texts, sources, weights = _rows(labels)
    out = write_map(tmp_path, "tiny", ids=ids, texts=texts, sources=None, coords=coords, weights=np.ones(3),
                    title="tiny")
    assert out["points"] == 3 and (tmp_path / out["png"]).stat().st_size > 0


def _output_dir() -> Path:
    out = Path(os.environ.get("VS_SONAR_TEST_OUTPUT") or Path(__file__).resolve().parents[3] / "test-output")
    out.mkdir(parents=True, exist_ok=True)
    return out


# Screen position of every point of a scatter3d trace, as plotly's own hover code computes it (scene.js):
# camera projection of the data coordinates times the scene's dataScale, in the scene container's box.
PROJECT_JS = """(t) => {
  const gd = document.getElementById('map'), sc = gd._fullLayout.scene._scene, d = gd.data[t];
  const cp = sc.glplot.cameraParams, ds = sc.dataScale, box = sc.container.getBoundingClientRect();
  const mul = (m, v) => { const r = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) r[j] += m[4 * i + j] * v[i]; return r; };
  return d.x.map((x, i) => {
    const p = mul(cp.projection, mul(cp.view, mul(cp.model, [x * ds[0], d.y[i] * ds[1], d.z[i] * ds[2], 1])));
    return [box.left + (0.5 + 0.5 * p[0] / p[3]) * box.width, box.top + (0.5 - 0.5 * p[1] / p[3]) * box.height];
  });
}"""


def test_the_page_draws_hovers_and_searches_in_headless_chromium(mapped, tmp_path):
    assert Path(CHROMIUM).exists(), f"needs Debian's chromium at {CHROMIUM}: run scripts/setup.sh"
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    _, labels, coords, _ = mapped
    ids, texts, sources, weights = _rows(labels)
    out = write_map(tmp_path, "1k", ids=ids, texts=texts, sources=sources, coords=coords, weights=weights,
                    title="vs-sonar 1k train")
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((tmp_path / out["html"]).as_uri())
            page.wait_for_function("document.getElementById('map').dataset.ready === '1'", timeout=20_000)
            drawn = page.evaluate("document.getElementById('map').data.map(d => d.x.length)")
            assert sum(drawn) == len(ids) and drawn[-1] == 0  # the last trace holds search matches only
            assert page.locator("#map canvas").count() >= 1

            # plotly picks the point under the mouse in its next WebGL frame: wait for the label to appear
            label = None
            for x, y in page.evaluate(PROJECT_JS, 0)[:8]:
                page.mouse.move(x, y)
                try:
                    label = page.wait_for_selector("#map .hovertext", timeout=2_000).text_content()
                    break
                except PlaywrightTimeout:
                    continue
            assert label, "no hover label over any point"
            token = re.search(r"zq(\d+)zq", label)
            assert token and f"row-{int(token[1]):04d}" in label and "<b>tag</b> &" in label  # escaped, shown as is
            page.mouse.move(5, 5)

            page.fill("#search", "NEEDLE")
            page.wait_for_function("document.getElementById('matches').textContent !== ''")
            expected = sum("needle" in t.lower() for t in texts)
            assert page.text_content("#matches") == f"{expected} matches"
            assert page.evaluate("(() => { const d = document.getElementById('map').data; "
                                 "return d[d.length - 1].x.length; })()") == expected
            page.screenshot(path=tmp_path / "map.png")
            shutil.copy(tmp_path / "map.png", _output_dir() / "map.png")
        finally:
            browser.close()
    assert not errors, errors
    assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests
