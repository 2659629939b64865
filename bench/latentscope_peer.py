"""Build a latentscope data directory holding the browser bench's 100,000 synthetic points.

Run with the project's venv; latentscope lives in its own venv (never in .venv):

    python3 -m venv /tmp/ls-venv && /tmp/ls-venv/bin/pip install latentscope
    .venv/bin/python bench/latentscope_peer.py [--store /tmp/browser-bench-store]
        [--data-dir /tmp/ls-data] [--ls-python /tmp/ls-venv/bin/python]

Step 1 (this venv): reads the custom-vector analysis of --store from a copy of the store
(the store itself is not opened) and writes ids, texts, labels, clusters, the 2-D map and
the vectors to DATA_DIR/points.parquet. Step 2 (--ls-python, the same file with --build):
writes the dataset `synthetic` the way latentscope's own scripts would, skipping the
steps that need models or long computations: ls.ingest (input.parquet, meta.json),
ls.import_embeddings (our vectors: no model download), umaps/umap-001 = our PCA map
scaled to [-1, 1] as ls-umap scales its output, clusters/cluster-001 = our clusters with
convex hulls as ls-cluster writes them, then ls.scope -> scopes/scopes-001 (scope
parquet and LanceDB table). Then serve it:

    /tmp/ls-venv/bin/ls-serve /tmp/ls-data --host 127.0.0.1 --port 5055
    # map page: http://127.0.0.1:5055/datasets/synthetic/explore/scopes-001
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

DATASET = "synthetic"


def export(store: Path, points: Path) -> None:
    """Our analysis of the 100,000 custom vectors, read from a copy of the store."""
    import embedlab
    import numpy as np
    import pandas as pd

    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        copy = Path(shutil.copytree(store, Path(scratch) / "store"))
        (copy / ".embedlab.lock").unlink(missing_ok=True)
        with embedlab.open(copy, quiet=True) as lab:
            found = [
                lab.analysis(i)
                for i in lab.analyses()["id"]
                if lab.analysis(i).space.provider == "custom"
            ]
            if not found:
                raise SystemExit(f"no analysis of custom vectors in {store}")
            analysis = found[0]
            texts = lab.analysis_texts_of(analysis)
            ids, vectors = lab.vectors(analysis.space)
    row = {doc_id: i for i, doc_id in enumerate(ids)}
    order = np.array([row[doc_id] for doc_id in analysis.ids])
    frame = pd.DataFrame(
        {
            "id": analysis.ids,
            "text": texts,
            "label": [label or "" for label in analysis.labels],
            "cluster": np.asarray(analysis.cluster_labels, dtype="int64"),
            "x": analysis.coords[:, 0].astype("float64"),
            "y": analysis.coords[:, 1].astype("float64"),
            "vector": list(np.asarray(vectors, dtype="float32")[order]),
        }
    )
    points.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(points)
    print(f"{len(frame):,} points of analysis {analysis.id} -> {points}")


def build(data_dir: Path, points: Path) -> None:
    """latentscope's files for the points (run with latentscope's own python)."""
    import latentscope as ls
    import numpy as np
    import pandas as pd
    from scipy.spatial import ConvexHull

    frame = pd.read_parquet(points)
    target = data_dir / DATASET
    if target.exists():
        shutil.rmtree(target)
    data_dir.mkdir(parents=True, exist_ok=True)
    ls.init(str(data_dir), env_file=str(data_dir / ".env"))  # sets LATENT_SCOPE_DATA
    ls.ingest(DATASET, frame[["id", "text", "label"]], text_column="text")
    vectors = np.stack(frame["vector"].to_numpy()).astype("float32")
    ls.import_embeddings(DATASET, vectors, model_id="embedlab-custom", text_column="text")

    xy = frame[["x", "y"]].to_numpy()
    low, high = xy.min(axis=0), xy.max(axis=0)
    scaled = 2 * (xy - low) / (high - low) - 1  # as ls-umap normalises its output
    umaps = target / "umaps"
    pd.DataFrame(scaled.astype("float32"), columns=["x", "y"]).to_parquet(
        umaps / "umap-001.parquet"
    )
    (umaps / "umap-001.json").write_text(
        json.dumps(
            {
                "id": "umap-001",
                "embedding_id": "embedding-001",
                "neighbors": 0,
                "min_dist": 0,
                "dimensions": 2,
                "min_values": low.tolist(),
                "max_values": high.tolist(),
                "name": "embedlab PCA map",
            }
        )
    )

    clusters = target / "clusters"
    codes = frame["cluster"].to_numpy()
    pd.DataFrame({"cluster": codes, "raw_cluster": codes}).to_parquet(
        clusters / "cluster-001.parquet"
    )
    (clusters / "cluster-001.json").write_text(
        json.dumps(
            {
                "id": "cluster-001",
                "umap_id": "umap-001",
                "method": "embedlab",
                "granularity": "rows",
                "cluster_on": "umap",
                "n_clusters": int(len(np.unique(codes))),
                "n_noise": 0,
            }
        )
    )
    rows = []
    for code in range(int(codes.max()) + 1):
        members = np.flatnonzero(codes == code)
        hull = []
        if len(members) >= 3:
            hull = [int(members[v]) for v in ConvexHull(scaled[members]).vertices]
        rows.append(
            {
                "label": f"Cluster {code}",
                "description": f"This is cluster {code} with {len(members)} items.",
                "indices": members.tolist(),
                "hull": hull,
            }
        )
    pd.DataFrame(rows).to_parquet(clusters / "cluster-001-labels-default.parquet")
    ls.scope(
        DATASET,
        "embedding-001",
        "umap-001",
        "cluster-001",
        "default",
        "embedlab synthetic",
        "the 100,000 synthetic points of bench/browser.py, embedlab's PCA map",
    )
    print(f"latentscope dataset {target}: scope scopes-001")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/browser-bench-store"))
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ls-data"))
    parser.add_argument("--ls-python", default="/tmp/ls-venv/bin/python")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    points = args.data_dir.parent / f"{args.data_dir.name}-points.parquet"
    if args.build:
        build(args.data_dir, points)
        return
    export(args.store, points)
    subprocess.run(
        [args.ls_python, __file__, "--build", "--data-dir", str(args.data_dir)],
        check=True,
    )


if __name__ == "__main__":
    main()
