"""Issue 25 (first use without a stumble), the notebook and output items: results shown
as HTML, progress bars that show counts when nothing was done, no stray lines or warnings,
snippets that show a post's body, CJK cluster terms, recorded options, one silhouette."""

from __future__ import annotations

import re

import embedlab
import numpy as np
import pytest
from embedlab.store import Document, Space, Store

from tests.builders import SPACE, WORDS

EVIL = "<script>alert('x')</script>"


def labelled_corpus(store: Store, space: Space = SPACE, per_group: int = 15) -> list[Document]:
    """WORDS' three groups around three centres; the "crypt" group's label is an HTML
    attack, as a user's label may be."""
    rng = np.random.default_rng(0)
    centres = {g: rng.normal(size=space.dims) * 3 for g in WORDS}
    docs, vectors = [], []
    for group, words in WORDS.items():
        label = f"crypt{EVIL}" if group == "crypt" else group
        for i in range(per_group):
            text = f"{words} note {i} {EVIL}"
            docs.append(Document(f"syn/{group}/{i:03d}", text, "synthetic", label))
            vectors.append(centres[group] + rng.normal(size=space.dims))
    rows = np.array(vectors, dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    store.collection(space, create=True).write(docs, rows, [False] * len(docs))
    return docs


# -- item 15: HTML views -------------------------------------------------------------------


def test_analysis_comparison_and_report_show_themselves_as_escaped_html(store_path, gemini):
    other = Space("fake", "fake-other", "none", 16)
    with Store.open_local(store_path, create=True) as store:
        labelled_corpus(store)
        labelled_corpus(store, other)
    with embedlab.open(store_path, quiet=True) as lab:
        analysis = lab.analyze(space=SPACE, k=3, seed=0, reduce="pca")
        page = analysis._repr_html_()
        assert EVIL not in page and "<script" not in page
        assert "crypt&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
        assert f"{len(analysis.ids)} documents, 3 clusters" in page
        assert f"hungarian_accuracy {analysis.metrics['hungarian_accuracy']:.3f}" in page
        share = analysis.metrics["per_class"]["space"]["share"]
        assert re.search(rf"<td[^>]*>space</td><td[^>]*>\d+</td><td[^>]*>{share:.3f}</td>", page)
        svg = re.search(r"<svg.*?</svg>", page)
        assert svg and svg[0].count('<path fill="') == 3  # one colour per cluster
        assert len(page.encode()) < 40_000

        compared = lab.compare(SPACE, other, k=3, reduce="pca")
        page = compared._repr_html_()
        assert EVIL not in page and "<script" not in page
        assert compared.headline() in page
        assert page.count("<svg") == 2  # A's map and B's
        assert re.search(r"<td[^>]*>space</td><td[^>]*>15</td>", page)

        neighbours = lab.neighbours(id="syn/crypt/000", k=3, space=SPACE)  # pandas' own HTML
        assert EVIL not in neighbours._repr_html_()

        report = lab.ingest(["a first text", "a second text"])
        page = report._repr_html_()
        assert "2 documents: 0 cached, 2 embedded" in page
        assert re.search(r"<td[^>]*>embedded</td><td[^>]*>2</td>", page)


def test_a_fully_cached_ingest_shows_counts_not_a_rate(store_path, gemini, capsys):
    texts = [f"post number {i}" for i in range(30)]
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(texts)
    with embedlab.open(store_path, quiet=False) as lab:
        capsys.readouterr()
        again = lab.ingest(texts)
    assert again.cached == 30
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "30/30" in bar and "30 cached, 0 embedded" in bar, bar
    assert "it/s" not in bar and "s/it" not in bar, bar


def test_the_notebook_extra_installs_ipywidgets_for_the_widget_bar():
    from tests.conftest import REPO

    tomllib = pytest.importorskip("tomllib")

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(x.startswith("ipywidgets") for x in extras["dev"])
    pytest.importorskip("ipywidgets")  # without it tqdm.auto warns "IProgress not found"


# -- item 19: no stray output, snippets, CJK terms, recorded task type ---------------------


def test_an_ingest_off_a_terminal_prints_no_bare_ingest_line(store_path, gemini, tmp_path):
    import json

    from click.testing import CliRunner
    from embedlab.cli import cli

    from tests.conftest import jsonl_ingest_args

    corpus = tmp_path / "posts.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": f"post {i}"}) + "\n" for i in range(5)))
    result = CliRunner().invoke(cli, jsonl_ingest_args(store_path, corpus))  # not a terminal
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert "ingest" not in lines, result.stderr
    assert not any(line.startswith("ingest ") and "%" in line for line in lines), result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("5 documents: 0 cached, 5 embedded")


POST = """\
From: jdoe@cs.example.edu (John Doe)
Subject: Re: Shuttle orbit decay
Organization: Example University, Dept. of Physics
Lines: 68
NNTP-Posting-Host: ra.example.edu

In article <1993Apr5.174532.1234@news.example.edu> asmith@example.com (A. Smith) writes:
>Will the shuttle orbit decay if nobody boosts it?
>
>Just wondering.

Yes: drag in the upper atmosphere takes energy from every low orbit, so it decays.
"""


def test_snippets_show_a_posts_body_not_its_headers(store_path):
    from embedlab.ingest.newsgroups import clean_notebook
    from embedlab.store.neighbours import snippet

    body = "Yes: drag in the upper atmosphere takes energy from every low orbit, so it decays."
    assert snippet(POST) == body
    assert snippet(clean_notebook(POST)) == body  # the notebook's cleaning keeps the headers
    assert snippet("Note: a plain text\nwith two lines") == "Note: a plain text with two lines"
    assert snippet("> only a quote") == "> only a quote"  # nothing left: the raw start

    with Store.open_local(store_path, create=True) as store:
        docs = labelled_corpus(store)
        posts = [Document(d.id, clean_notebook(POST) + d.text, d.source, d.label) for d in docs]
        vectors = store.collection(SPACE).load([d.id for d in docs], with_text=False)[0]
        store.collection(SPACE).write(posts, vectors, [False] * len(posts))
    with embedlab.open(store_path, quiet=True) as lab:
        analysis = lab.analyze(space=SPACE, k=3, seed=0, reduce="pca")
        shown = [r["snippet"] for c in analysis.clusters for r in c["representatives"]]
        assert shown and all(s.startswith("Yes: drag in the upper") for s in shown), shown
        assert "Lines: 68" in lab.documents()["text"].iloc[0]  # the stored text is kept


def test_japanese_cluster_terms_are_short_words_not_sentences():
    from embedlab.analyze.describe import top_terms

    texts = [
        "宇宙ロケットの打ち上げは成功しました。ロケットは軌道に到達しました。",
        "新しいロケットの打ち上げが延期されました。宇宙ステーションへ向かいます。",
        "病院の医者は患者の治療を続けています。病気の治療薬が承認されました。",
        "医者によると、この病気の治療には時間がかかります。患者は回復しています。",
    ]
    terms = top_terms(np.array([0, 0, 1, 1]), texts, [0, 1])
    assert terms[0] and terms[1]
    every = terms[0] + terms[1]
    assert all(len(term) <= 4 for term in every), every
    assert "ロケ" in terms[0] or "宇宙" in terms[0], terms[0]
    assert "治療" in terms[1] or "患者" in terms[1], terms[1]


def test_a_local_model_ingest_job_records_no_task_type(tmp_path):
    from tests.fake_gemini import FakeGemini
    from tests.service_helpers import InProcessService

    docs = [{"id": f"d{i}", "text": f"a short post about rockets {i}"} for i in range(3)]
    with FakeGemini() as fake:
        service = InProcessService(tmp_path / "store", fake)
        try:
            local = service.ingest(docs, provider="local", dry_run=True)  # no model loaded
            job = service.http.get(f"/api/v1/jobs/{local['job']}").json()
            assert job["state"] == "done", job
            assert job["request"]["task_type"] == "none", job["request"]
            assert job["request"]["provider"] == "local"
            remote = service.ingest(docs, provider="gemini", dims=128)
            job = service.http.get(f"/api/v1/jobs/{remote['job']}").json()
            assert job["request"]["task_type"] == "CLUSTERING", job["request"]
        finally:
            assert service.stop() == 0


# -- item 8: one silhouette for --k auto ---------------------------------------------------


@pytest.mark.parametrize("space", [SPACE, Space("local", "mini-model", "none", 16)])
def test_k_auto_prints_one_silhouette_figure(store_path, tmp_path, space):
    from click.testing import CliRunner
    from embedlab.cli import cli

    from tests.builders import grouped_corpus

    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store, per_group=20, space=space)  # the local model: text weight 1
    args = ["--store", str(store_path), "analyze", "--k", "auto", "--reduce", "pca"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    with embedlab.open(store_path, quiet=True) as lab:
        analysis = lab.analyses().iloc[0]
        silhouette = lab.analysis(analysis["id"]).metrics["silhouette"]
    figures = re.findall(r"silhouette (-?\d\.\d{3})", result.output)
    assert figures and set(figures) == {f"{silhouette:.3f}"}, result.output
    assert "chosen by silhouette" in result.output
