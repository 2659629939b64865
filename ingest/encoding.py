"""Decoding the bytes of a text file, CSV or JSON Lines input, and saying how.

Most inputs are UTF-8; the rest are mostly Windows' cp1252 (Western Europe) or, in
East Asia, a multibyte legacy encoding such as Shift-JIS. Detectors guess badly on the
short texts a document often is (of bench/encodings.py's 24 short samples,
charset-normalizer 3.5 alone read 10 right, UTF-8/cp1252/latin-1 alone 13, the rules
here 21: all the cp1252, latin-1, Shift-JIS and EUC-JP ones), so the rules are explicit:

1. a UTF-32/16 byte-order mark; a UTF-8 one, or valid UTF-8;
2. cp1252 when every byte is defined in it (a superset of latin-1's printable range),
   else latin-1 (which decodes any bytes), when that reads as Western text: accented
   letters and typographic marks, never in the long runs that a multibyte encoding's
   bytes make when read one at a time;
3. otherwise a CJK encoding (Shift-JIS, EUC-JP, GBK, EUC-KR, Big5) that decodes the
   bytes strictly into that script's characters (kana, ideographs, hangul, full-width
   forms), charset-normalizer choosing where several do;
4. otherwise the single-byte reading of step 2.
"""

from __future__ import annotations

import codecs

UTF8 = "utf-8"
UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# (encoding, the scripts its text is written in); kana or hangul break ties between them
CJK_ENCODINGS = (
    ("shift_jis", ("kana", "han", "wide")),
    ("euc_jp", ("kana", "han", "wide")),
    ("gbk", ("han", "wide")),
    ("euc_kr", ("hangul", "han", "wide")),
    ("big5", ("han", "wide")),
)
NATIVE_SHARE = 0.9  # of the non-ASCII characters, at least this many in the script


def _script(char: str) -> str | None:
    code = ord(char)
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF:  # not half-width forms
        return "kana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if 0x3000 <= code <= 0x303F or 0xFF01 <= code <= 0xFF60 or 0xFFE0 <= code <= 0xFFEF:
        return "wide"  # full-width forms; half-width katakana (FF61-FF9F) are rare in text
    return None


# what Western text holds beyond ASCII: accented letters, typographic marks
WESTERN = set("“”‘’–—…€•«»°§©®™£¿¡·ŒœŠšŽžŸ\xa0")


def _western(text: str) -> bool:
    """Whether a single-byte decoding reads as Western text: its non-ASCII characters
    are accented letters and typographic marks, or come one or two at a time between
    ASCII ones (é, “ ”, €) rather than in the long runs of a multibyte encoding's bytes
    read one at a time (which also turn up symbols such as ‚ ƒ ‡ ¤)."""
    plausible = all(
        c in WESTERN or ("À" <= c <= "ÿ" and c not in "×÷") for c in text if ord(c) > 0x7F
    )
    run = longest = 0
    for char in text:
        run = run + 1 if ord(char) > 0x7F else 0
        longest = max(longest, run)
    return longest <= (3 if plausible else 2)


def _cjk(raw: bytes) -> tuple[str, str] | None:
    """The CJK decoding of `raw` whose text is that script's; where several are, the one
    charset-normalizer finds most coherent (its language models are good at this)."""
    passing: dict[str, str] = {}
    for encoding, scripts in CJK_ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        wide = [c for c in text if ord(c) > 0x7F]
        if wide and sum(_script(c) in scripts for c in wide) >= NATIVE_SHARE * len(wide):
            passing[encoding] = text
    if len(passing) > 1:
        import charset_normalizer

        best = charset_normalizer.from_bytes(raw, cp_isolation=list(passing)).best()
        if best is not None and best.encoding in passing:
            return passing[best.encoding], best.encoding
    for encoding, text in passing.items():
        return text, encoding
    return None


def decode(raw: bytes) -> tuple[str, str]:
    """(text, the encoding it was read as); "utf-8" for UTF-8 with or without a BOM."""
    for bom, encoding in UNICODE_BOMS:
        if raw.startswith(bom):
            return raw.decode(encoding, errors="replace"), encoding
    try:
        return raw.decode("utf-8-sig"), UTF8
    except UnicodeDecodeError:
        pass
    try:
        western: tuple[str, str] = raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        western = raw.decode("latin-1"), "latin-1"
    if _western(western[0]):
        return western
    return _cjk(raw) or western
