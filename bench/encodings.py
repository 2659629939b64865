"""Encodings benchmark: which decoder reads short non-UTF-8 texts right.

Short texts (a subject line, a CSV cell) in the encodings users' files come in, each
encoded and decoded back three ways: the issue's plain rules (UTF-8, then cp1252, then
latin-1), charset-normalizer's best guess, and embedlab's `ingest.encoding.decode`.
Prints, per encoding, how many came back exactly.

Run: .venv/bin/python bench/encodings.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import charset_normalizer  # noqa: E402
from embedlab.ingest.encoding import decode  # noqa: E402

SAMPLES = {
    "cp1252": [
        "Café crème “smart” — €5",
        "Ärger über Öl – naïve façade",
        "He said “no” – twice…",
        "Señor Muñoz paid 20€",
        "Œuvre complète • page 2",
        "Don’t stop",
        "ÅÄÖ",
        "Føroyar: ÓÐÁL",
    ],
    "latin-1": ["Café crème", "Ärger über Öl", "Señor Muñoz año", "garçon à côté", "Zürich"],
    "shift_jis": [
        "日本語のテキスト",
        "こんにちは、世界",
        "東京は晴れです。",
        "カタカナとひらがな",
        "機械学習の埋め込み",
    ],
    "euc_jp": ["日本語のテキスト", "こんにちは、世界"],
    "gbk": ["中文文本测试", "你好，世界"],
    "cp1251 (not targeted)": ["Привет, мир", "Добрый день"],
}


def plain_rules(raw: bytes) -> str:
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")


def detector(raw: bytes) -> str:
    best = charset_normalizer.from_bytes(raw).best()
    return str(best) if best is not None else raw.decode("latin-1")


def main() -> None:
    ways = {
        "plain rules": plain_rules,
        "charset-normalizer": detector,
        "embedlab": lambda r: decode(r)[0],
    }
    print(f"{'encoding':<22}" + "".join(f"{name:>20}" for name in ways))
    totals = dict.fromkeys(ways, 0)
    count = 0
    for encoding, texts in SAMPLES.items():
        codec = encoding.split(" ")[0]
        row = []
        for name, way in ways.items():
            right = sum(way(text.encode(codec)) == text for text in texts)
            totals[name] += right
            row.append(f"{right}/{len(texts)}")
        count += len(texts)
        print(f"{encoding:<22}" + "".join(f"{cell:>20}" for cell in row))
    print(f"{'all':<22}" + "".join(f"{f'{totals[n]}/{count}':>20}" for n in ways))


if __name__ == "__main__":
    main()
