"""The plain data every result records about its space (analyses, updates, comparisons).

A leaf module: `Analysis`, `Comparison`, the map's data and the runs all read it, so
none of them has to import another for it.
"""

from __future__ import annotations

from typing import Any

from ..store import Space


def space_dict(space: Space) -> dict[str, Any]:
    return space.to_dict()
