import re

from embedlab.store import Document, Space, content_hash, normalise_text


def test_normalisation_merges_unicode_and_line_ending_variants():
    composed = "caf\u00e9 cr\u00e8me\r\nline two  \r\n"
    decomposed = "cafe\u0301 cre\u0300me\nline two\n"
    assert normalise_text(composed) == normalise_text(decomposed) == "café crème\nline two"
    assert content_hash(normalise_text(composed)) == content_hash(normalise_text(decomposed))


def test_different_texts_hash_differently_and_hash_is_sha256():
    a, b = Document("a", "alpha", "s"), Document("b", "alpha ", "s")
    c = Document("c", "beta", "s")
    assert a.content_hash == b.content_hash != c.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", a.content_hash)


def test_document_metadata_carries_identity():
    doc = Document("x/1", "  hello  ", "x", "greeting")
    assert doc.text == "hello"
    assert doc.metadata(truncated=True) == {
        "source": "x",
        "content_hash": doc.content_hash,
        "chars": 5,
        "truncated": True,
        "label": "greeting",
    }
    # always present: None removes a stale label (Chroma merges metadata on upsert)
    assert Document("x/2", "hi", "x").metadata()["label"] is None


def test_each_space_gets_its_own_legal_collection_name():
    spaces = [
        Space("gemini", "gemini-embedding-001", "CLUSTERING", 3072),
        Space("gemini", "gemini-embedding-001", "CLUSTERING", 768),
        Space("gemini", "gemini-embedding-001", "RETRIEVAL_DOCUMENT", 3072),
        Space("local", "sentence-transformers/all-MiniLM-L6-v2", "none", 384),
    ]
    names = [s.collection_name for s in spaces]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]", name), name
