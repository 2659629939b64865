"""JSON output, one rule for every front end: `--json` prints one JSON document (the
API's field names), `--jsonl` one document per line where a listing streams.

`jsonable` turns what the library returns (numpy scalars, NaN, pandas' missing values)
into plain JSON data; `dumps` writes it as the service does: UTF-8 text, no `\\/`.
"""

from __future__ import annotations

import json
import math
from typing import Any


def jsonable(value: Any) -> Any:
    """JSON-ready data: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # a numpy array or scalar
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    return str(value)


def records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame's rows as JSON-ready dicts (its column names are the fields)."""
    return jsonable(frame.to_dict(orient="records"))


def dumps(value: Any, indent: int | None = 2) -> str:
    """One JSON document: `value` made jsonable, non-ASCII kept, no NaN."""
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False, allow_nan=False)
