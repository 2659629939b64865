"""Typed repositories over the store's artifacts (store.artifacts), one per kind.

`Artifacts` addresses records by a string kind and a key; these classes name each kind
once and give its reads and writes typed methods, so no caller spells a kind.
"""

from __future__ import annotations

ANALYSIS = "analysis"
# per space, when documents were last deleted: an analysis made after that cannot miss
# any, so reopening it checks nothing (a check reads every id: 13 s at 100,000)
DELETION = "deletion"
COMPARISON = "comparison"
MAP = "map"
MAP_BASIS = MAP + "-basis"
SOURCE = "source"
