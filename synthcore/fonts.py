"""Fonts of every picture we draw: class names in any script the recipe allows, drawn with real glyphs.

matplotlib's own DejaVu Sans covers Latin, Greek, Cyrillic and more, but not Korean, Chinese or Japanese (the
smoke recipe's ``여우`` drew as boxes). The Noto Sans CJK collection (the ``noto-cjk-sans-otc`` package, a
dependency: 15 MB, SIL Open Font License) is registered with matplotlib's font manager and listed after DejaVu
Sans, so matplotlib falls back to it glyph by glyph (a list of families, matplotlib >= 3.6). A character that no
listed font has is drawn as its escape (``\\u0e01``: ``shown``) rather than as a box, and text is never parsed as
mathtext (``picture_style``): a class name may hold ``$``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

BASE_FAMILY = "DejaVu Sans"
# The faces of the collection, in order of preference (any one has every Hangul syllable, kana and CJK ideograph;
# matplotlib before 3.11 registers only the first face of a collection file).
CJK_FAMILIES = ("Noto Sans CJK KR", "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK HK")


@lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """DejaVu Sans, then a CJK face when the font package is installed (registered once per process)."""
    from matplotlib import font_manager

    try:
        from noto_cjk_sans_otc import FONT_PATH
    except ImportError:
        return (BASE_FAMILY,)
    font_manager.fontManager.addfont(str(FONT_PATH))
    registered = {entry.name for entry in font_manager.fontManager.ttflist}
    return (BASE_FAMILY, *[family for family in CJK_FAMILIES if family in registered][:1])


@lru_cache(maxsize=1)
def _charmap() -> frozenset[int]:
    from matplotlib import font_manager

    codes: set[int] = set()
    for family in font_families():
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        codes |= set(font_manager.get_font(path).get_charmap())
    return frozenset(codes)


def shown(text: str) -> str:
    """``text`` as the pictures draw it: a character none of the fonts has becomes its ``\\uXXXX`` escape."""
    charmap = _charmap()
    return "".join(c if ord(c) in charmap or c.isspace() else c.encode("unicode_escape").decode() for c in text)


@contextmanager
def picture_style() -> Iterator[None]:
    """matplotlib settings for drawing a picture: the fonts with fallback, and no mathtext."""
    import matplotlib

    with matplotlib.rc_context({"font.family": list(font_families()), "text.parse_math": False}):
        yield
