"""An explorable map of a split's embeddings: a seeded 3-D UMAP (cosine) scaled to [-1, 1], written as one
self-contained HTML page (plotly, rotatable, searchable), a JSON of the points and a 2-D PNG for the card.

umap, plotly and matplotlib are imported inside the functions: build code imports this module even when the
map is disabled and should not pay for them then.
"""

import html
import json
import textwrap
from pathlib import Path

import numpy as np

N_COMPONENTS = 3
MIN_UMAP_ROWS = N_COMPONENTS + 2  # UMAP's spectral init needs more rows than components + 1
HOVER_CHARS, HOVER_WIDTH = 300, 60
SIZE_MIN, SIZE_MAX = 3.0, 12.0
MAX_CLUSTERS = 8
# Tableau 10: distinct on white and in print; categories past ten reuse colours (the legend still names them)
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]


def _scaled(coords: np.ndarray) -> np.ndarray:
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = high - low
    # an axis with no real spread (fewer rows than axes) stays at 0 rather than stretching rounding noise
    flat = span <= 1e-6 * max(float(span.max(initial=0.0)), 1e-30)
    return np.where(flat, 0.0, (coords - low) / np.where(flat, 1.0, span) * 2 - 1).astype(np.float32)


def _pca(x: np.ndarray, k: int) -> np.ndarray:
    """The first k principal coordinates, signs fixed so that each axis's largest loading is positive
    (eigenvector signs are otherwise arbitrary)."""
    centered = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    # principal axes from the d x d covariance: far cheaper than an SVD of a 10k-row matrix
    _, vectors = np.linalg.eigh(centered.T @ centered)
    top = vectors[:, ::-1][:, :k]
    top *= np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
    out = np.zeros((len(x), k))
    out[:, : top.shape[1]] = centered @ top
    return out


def project(vectors: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1,
            seed: int = 0) -> tuple[np.ndarray, dict]:
    """Seeded UMAP (metric cosine, n_components=3) of float32 [n, d] vectors -> (float32 [n, 3] coords each
    axis scaled to [-1, 1], params dict recording every UMAP parameter used + umap version)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n < MIN_UMAP_ROWS:
        params = {"method": "pca", "reason": f"{n} rows: UMAP needs at least {MIN_UMAP_ROWS}",
                  "n_components": N_COMPONENTS, "rows": n}
        return _scaled(_pca(x, N_COMPONENTS)) if n else np.zeros((0, 3), np.float32), params

    import umap

    params = {"method": "umap", "umap_version": umap.__version__, "rows": n, "n_neighbors_requested": n_neighbors}
    reducer = umap.UMAP(n_components=N_COMPONENTS, metric="cosine", n_neighbors=max(2, min(n_neighbors, n - 1)),
                        min_dist=min_dist, random_state=seed, n_jobs=1)  # a seed makes UMAP single-threaded
    coords = reducer.fit_transform(x)
    params.update({k: v for k, v in sorted(reducer.get_params().items())
                   if v is None or isinstance(v, (bool, int, float, str))})
    return _scaled(coords), params


def _hover(text: str, id_: str, source: str | None) -> str:
    short = text if len(text) <= HOVER_CHARS else text[: HOVER_CHARS - 1].rstrip() + "…"
    lines = textwrap.wrap(short, HOVER_WIDTH) or [""]
    # escape after wrapping so that no line break lands inside an entity
    body = "<br>".join(html.escape(line, quote=False) for line in lines)
    tail = f"<b>{html.escape(str(id_), quote=False)}</b>"
    return f"{body}<br>{tail}" + (f" · {html.escape(source, quote=False)}" if source else "")


def _categories(sources, coords: np.ndarray) -> tuple[str, list[str]]:
    if sources is not None and len(set(sources)) > 1:
        return "source", list(sources)
    n = len(coords)
    if n < 2:
        return "cluster", ["cluster 1"] * n
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=min(MAX_CLUSTERS, n), random_state=0, n_init=1).fit_predict(coords)
    # number clusters by size (largest first, then first appearance): k-means' own numbering is arbitrary
    counts = np.bincount(labels)
    order = sorted(set(labels.tolist()), key=lambda c: (-counts[c], int(np.argmax(labels == c))))
    name = {c: f"cluster {i + 1}" for i, c in enumerate(order)}
    return "cluster", [name[c] for c in labels.tolist()]


def _sizes(weights: np.ndarray) -> np.ndarray:
    """Marker size by the rank of the density weight (rare rows weigh more, so they draw bigger); ranks keep a
    few extreme weights from flattening everyone else, and equal weights get equal sizes."""
    w = np.asarray(weights, dtype=np.float64)
    levels, rank = np.unique(w, return_inverse=True)
    if len(levels) < 2:
        return np.full(len(w), (SIZE_MIN + SIZE_MAX) / 2)
    return SIZE_MIN + (SIZE_MAX - SIZE_MIN) * rank / (len(levels) - 1)


def _write(path: Path, data: bytes) -> None:
    from ..core.shards import write_bytes_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)


# Runs once the plot is drawn: marks the div ready (tests, benchmark) and wires the search box. Matches are drawn
# by an extra ring trace (last) while the other traces fade; scatter3d takes only one opacity per trace.
SEARCH_JS = """
var gd = document.getElementById('{plot_id}'), box = document.getElementById('search'),
    out = document.getElementById('matches'), ring = gd.data.length - 1, timer = null;
function search() {
  var q = box.value.trim().toLowerCase(), x = [], y = [], z = [], s = [], others = [];
  for (var t = 0; t < ring; t++) {
    var d = gd.data[t]; others.push(t);
    if (!q) continue;
    for (var i = 0; i < d.customdata.length; i++) {
      if (d.customdata[i].indexOf(q) < 0) continue;
      x.push(d.x[i]); y.push(d.y[i]); z.push(d.z[i]); s.push(d.marker.size[i] + 6);
    }
  }
  Plotly.restyle(gd, {opacity: q ? 0.2 : 0.85}, others);
  Plotly.restyle(gd, {x: [x], y: [y], z: [z], 'marker.size': [s]}, [ring]);
  out.textContent = q ? x.length + (x.length === 1 ? ' match' : ' matches') : '';
}
box.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(search, 120); });
gd.dataset.ready = '1';
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:14px system-ui,sans-serif;margin:10px}}#bar{{margin-bottom:6px}}#search{{width:24em}}</style>
</head><body>
<div id="bar"><input id="search" type="search" placeholder="search the texts" autocomplete="off">
<span id="matches"></span> <small>{note}</small></div>
{plot}
</body></html>
"""


def _html(title, note, cats, ordered, coords, sizes, hovers, texts) -> bytes:
    import plotly.graph_objects as go

    fig, xyz = go.Figure(), coords.round(5)
    for label, colour in ordered:
        rows = [i for i, c in enumerate(cats) if c == label]
        fig.add_trace(go.Scatter3d(
            # plain lists, not numpy: plotly would base64 them, and the search script reads gd.data[t].x[i]
            x=xyz[rows, 0].tolist(), y=xyz[rows, 1].tolist(), z=xyz[rows, 2].tolist(), mode="markers",
            name=f"{label} ({len(rows)})", text=[hovers[i] for i in rows],
            customdata=[texts[i].lower() for i in rows], hovertemplate="%{text}<extra></extra>", opacity=0.85,
            marker={"size": sizes[rows].round(2).tolist(), "color": colour, "line": {"width": 0}}))
    fig.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="markers", name="matches", showlegend=False,
                               hoverinfo="skip", marker={"symbol": "circle-open", "color": "#111", "size": []}))
    axis = {"range": [-1.05, 1.05], "title": {"text": ""}}
    fig.update_layout(title={"text": html.escape(title, quote=False)}, height=720, margin={"l": 0, "r": 0, "t": 40,
                      "b": 0}, scene={"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "cube"},
                      legend={"itemsizing": "constant"}, hoverlabel={"align": "left"})
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id="map", post_script=SEARCH_JS,
                       config={"displaylogo": False, "responsive": True})
    return PAGE.format(title=html.escape(title), note=html.escape(note), plot=plot).encode()


def _png(title, note, cats, ordered, coords, sizes) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for label, colour in ordered:
        rows = [i for i, c in enumerate(cats) if c == label]
        # plotly sizes are diameters in px; matplotlib wants an area in points^2
        ax.scatter(coords[rows, 0], coords[rows, 1], s=(sizes[rows] * 0.6) ** 2, color=colour, alpha=0.6,
                   linewidths=0, label=label)
    ax.set(title=title, xlabel="x", ylabel="y", xlim=(-1.1, 1.1), ylim=(-1.1, 1.1))
    if len(ordered) <= 12:
        ax.legend(fontsize=7, markerscale=0.8, loc="best", framealpha=0.7)
    if note:
        fig.text(0.5, 0.01, note, ha="center", fontsize=8, color="#555")
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
    buffer = io.BytesIO()
    # no Software/date chunks: the same inputs must give the same bytes
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_map(release: Path, config: str, *, ids: list[str], texts: list[str], sources: list[str] | None,
              coords: np.ndarray, weights: np.ndarray, title: str, sampled_from: int | None = None) -> dict:
    """Writes map/{config}.html, map/{config}.json and map/{config}.png under release/; returns
    {"html": "map/{config}.html", "json": "map/{config}.json", "png": "map/{config}.png", "points": n,
    "color_by": "source"|"cluster"}."""
    release = Path(release)
    coords = np.asarray(coords, dtype=np.float64)
    n = len(coords)
    if not len(ids) == len(texts) == len(weights) == n or (sources is not None and len(sources) != n):
        raise ValueError(f"write_map: {n} coords but {len(ids)} ids, {len(texts)} texts, {len(weights)} weights"
                         + ("" if sources is None else f", {len(sources)} sources"))
    color_by, cats = _categories(sources, coords)
    labels = sorted(set(cats)) if color_by == "source" else sorted(set(cats), key=lambda c: int(c.split()[1]))
    ordered = [(label, PALETTE[i % len(PALETTE)]) for i, label in enumerate(labels)]
    colour = dict(ordered)
    sizes = _sizes(weights)
    note = f"drawn from a seeded sample of {n:,} of {sampled_from:,} rows" if sampled_from else ""
    hovers = [_hover(texts[i], ids[i], None if sources is None else sources[i]) for i in range(n)]

    points = [{"id": ids[i], "text": texts[i], "source": None if sources is None else sources[i],
               "x": round(float(coords[i, 0]), 5), "y": round(float(coords[i, 1]), 5),
               "z": round(float(coords[i, 2]), 5), "size": round(float(sizes[i]), 2), "color": colour[cats[i]],
               "label": cats[i]} for i in range(n)]
    doc = {"config": config, "title": title, "color_by": color_by, "sampled_from": sampled_from, "points": points}
    out = {"html": f"map/{config}.html", "json": f"map/{config}.json", "png": f"map/{config}.png",
           "points": n, "color_by": color_by}
    _write(release / out["json"], (json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n").encode())
    _write(release / out["html"], _html(title, note, cats, ordered, coords, sizes, hovers, texts))
    _write(release / out["png"], _png(title, note, cats, ordered, coords, sizes))
    return out
