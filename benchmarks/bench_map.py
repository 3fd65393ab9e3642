"""The embedding map: (a) the seeded 3-D UMAP (cosine) of `embedding_map.project` against a PCA to 3-D of the
same matrix, in the same run; (b) its HTML page opening in headless Chromium, from goto to the plot having drawn
every point, against loading a blank page.

    .venv/bin/python benchmarks/bench_map.py [--rows 10000] [--dim 1024] [--clusters 30] [--skip-browser]

Vectors are unit rows around --clusters random centres (cosine to the centre ~0.6-0.9). The first UMAP call of a
process compiles numba code: a warm-up call on 300 rows is timed separately so that the big call's time is the
projection itself (the first map of a build pays both).
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vs_sonar_dataset.build.embedding_map import _pca, project, write_map

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--use-gl=swiftshader",
                 "--enable-unsafe-swiftshader"]


def clustered(n: int, dim: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    spread = rng.uniform(0.5, 1.5, (n, 1)).astype(np.float32) / np.sqrt(dim)
    x = centres[labels] + spread * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def browser(page_path: Path, blank: Path, n: int, repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    ready = "document.getElementById('map').dataset.ready === '1'"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1100, "height": 820})
            blank_s, map_s = [], []
            for _ in range(repeats):  # alternate, so both see the same load
                _, seconds = timed(page.goto, blank.as_uri())
                blank_s.append(seconds)
                start = time.perf_counter()
                page.goto(page_path.as_uri())
                page.wait_for_function(ready, timeout=60_000, polling=20)
                map_s.append(time.perf_counter() - start)
                drawn = page.evaluate("document.getElementById('map').data.reduce((s, d) => s + d.x.length, 0)")
                assert drawn == n, (drawn, n)
        finally:
            chromium.close()
    print(f"browser: {page_path.stat().st_size / 2**20:.1f} MiB page, {n} points drawn in "
          f"{np.median(map_s):.2f} s (median of {repeats}: {', '.join(f'{s:.2f}' for s in map_s)}); blank page "
          f"{np.median(blank_s) * 1000:.0f} ms -> map/blank {np.median(map_s) / np.median(blank_s):.0f}x; "
          f"load average {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--clusters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="page loads timed (median reported)")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    import umap

    x, labels = clustered(args.rows, args.dim, args.clusters)
    print(f"{args.rows} x {args.dim}, {args.clusters} clusters; umap-learn {umap.__version__}; load average {load()}")
    _, warm_s = timed(project, x[:300])
    (coords, params), umap_s = timed(project, x)
    _, pca_s = timed(_pca, x, 3)
    print(f"numba warm-up (first call, 300 rows): {warm_s:.1f} s")
    print(f"UMAP 3-D: {umap_s:.1f} s (n_neighbors {params['n_neighbors']}, n_epochs {params['n_epochs']}, "
          f"low_memory {params['low_memory']}, single thread: seeded) | PCA 3-D: {pca_s:.2f} s -> "
          f"UMAP/PCA {umap_s / pca_s:.0f}x; first map of a process {warm_s + umap_s:.1f} s")

    rng = np.random.default_rng(1)
    words = ["restate", "compute", "check", "units", "estimate", "verify", "simplify", "compare"]
    texts = [f"row {i}: " + " ".join(rng.choice(words, 30)) for i in range(args.rows)]
    sources = [f"source-{lab % 3}" for lab in labels]
    with tempfile.TemporaryDirectory() as tmp:
        out, write_s = timed(write_map, Path(tmp), "10k", ids=[f"id-{i}" for i in range(args.rows)], texts=texts,
                             sources=sources, coords=coords, weights=rng.random(args.rows), title="bench map")
        print(f"write_map: {write_s:.1f} s (html + json + png, {out['points']} points)")
        if args.skip_browser or not Path(CHROMIUM).exists():
            return
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body></body></html>\n")
        browser(Path(tmp) / out["html"], blank, args.rows, args.repeats)


if __name__ == "__main__":
    main()
