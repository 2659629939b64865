"""Documents from Python objects: a DataFrame, a list of strings, or a list of dicts.

What `Lab.ingest` and `RemoteLab.ingest` read (inputs.py), so one input gets the same ids
whichever way it is ingested.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..errors import InvalidRequest
from ..store.documents import Document, user_fields
from ..store.keys import content_hash, normalise_text
from .skips import skip
from .sources import DEFAULT_FIELDS, default_fields


def python_documents(
    data: Any,
    text: str,
    id: str | None,  # noqa: A002
    label: str | None,
    source: str,
    skipped: Counter[str],
    vector: str | None = None,
    vectors: dict[str, Any] | None = None,
) -> Iterable[Document]:
    """Documents from a DataFrame, a list of strings, or a list of dicts. With `vector`
    (a column or key of vectors computed elsewhere), each one's vector goes in `vectors`."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        yield from frame_documents(data, text, id, label, source, skipped, vector, vectors)
        return
    if isinstance(data, str | bytes) or not isinstance(data, Iterable):
        raise InvalidRequest("give a DataFrame, a list of strings, or a list of dicts")
    for n, item in enumerate(data):
        if isinstance(item, str) and vector is not None:
            raise InvalidRequest(
                f"item {n} is a string; with vector= give dicts or a DataFrame with a "
                f"{vector!r} key or column"
            )
        if isinstance(item, str):
            yield Document(content_id(item), item, source)
        elif isinstance(item, dict):
            body = item.get(text)
            if not isinstance(body, str):
                skip(skipped, "no text" if body is None else "text not a string", f"item {n}")
                continue
            key = item.get(id or DEFAULT_FIELDS["id"])
            tag = item.get(label or DEFAULT_FIELDS["label"])
            doc_id = content_id(body) if key is None else check_id(str(key), f"item {n}")
            if vector is not None and vectors is not None:
                vectors.setdefault(doc_id, item.get(vector))
            named = (text, id or DEFAULT_FIELDS["id"], label or DEFAULT_FIELDS["label"])
            own, dropped = item_fields(item, (*named, "source", vector))
            yield Document(
                doc_id,
                body,
                str(item.get("source") or source),
                None if tag is None else str(tag),
                fields=dict(own),
                dropped_fields=dropped,
            )
        else:
            raise InvalidRequest(f"item {n} is a {type(item).__name__}; give strings or dicts")


def frame_documents(  # noqa: A002
    frame, text, id, label, source, skipped, vector=None, vectors=None
) -> Iterable[Document]:
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    for role, name in (("text", text), ("id", id), ("label", label), ("vector", vector)):
        if name is not None and name not in frame.columns:
            raise InvalidRequest(
                f"the DataFrame has no {role} column {name!r}; its columns: {', '.join(columns)}"
            )
    # without an id column, ids come from the text: a default index (0, 1, 2...) would
    # make the next DataFrame overwrite this one's documents
    _text, id, label = default_fields(columns, text, id, label)
    ids = frame[id] if id else None
    tags = frame[label] if label else None
    raws = frame[vector].tolist() if vector is not None else None
    others = frame.drop(columns=[c for c in (_text, id, label, vector) if c is not None]).to_dict(
        orient="records"
    )
    for row, body in enumerate(frame[text].tolist()):
        if not isinstance(body, str):
            missing = body is None or pd.isna(body)
            skip(skipped, "no text" if missing else "text not a string", f"row {row}")
            continue
        tag = None if tags is None else tags.iloc[row]
        tag = None if tag is None or (not isinstance(tag, str) and pd.isna(tag)) else str(tag)
        doc_id = content_id(body) if ids is None else str(ids.iloc[row])
        if raws is not None and vectors is not None:
            vectors.setdefault(doc_id, raws[row])
        own, dropped = user_fields(others[row])
        yield Document(doc_id, body, source, tag, fields=dict(own), dropped_fields=dropped)


def item_fields(item: dict[Any, Any], exclude: tuple[Any, ...]) -> tuple[dict[str, Any], int]:
    """A dict's own fields: its other scalar entries, and those of a "fields" object (what
    the client sends, so a field named like "text" or "id" travels too)."""
    nested = item.get("fields")
    skip = {str(name) for name in exclude if name is not None}
    if isinstance(nested, dict):
        skip.add("fields")
    record = {name: value for name, value in item.items() if str(name) not in skip}
    return user_fields({**(nested if isinstance(nested, dict) else {}), **record})


def check_id(doc_id: str, where: str) -> str:
    """`doc_id`, refused (InvalidRequest) when it is empty or only spaces: every front end
    (Python, HTTP) refuses such an id the same way."""
    if not doc_id.strip():
        raise InvalidRequest(f"{where} has an id of only spaces; give each document a real id")
    return doc_id


def check_ids(ids: Iterable[Any]) -> None:
    """Each given id (None: derived from the text) checked by check_id, before any work."""
    for n, doc_id in enumerate(ids):
        if doc_id is not None:
            check_id(str(doc_id), f"document {n}")


def content_id(text: str) -> str:
    """An id for a text given without one: the same text always gets the same id."""
    return f"text/{content_hash(normalise_text(text))[:16]}"
