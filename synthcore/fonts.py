"""Fonts of every picture we draw: class names in any script the recipe allows, drawn with real glyphs.

matplotlib's own DejaVu Sans covers Latin, Greek, Cyrillic and more, but not Korean, Chinese or Japanese (the
smoke recipe's ``여우`` drew as boxes). The Noto Sans CJK collection (the ``noto-cjk-sans-otc`` package, a
dependency: 15 MB, SIL Open Font License) is registered with matplotlib's font manager and listed after DejaVu
Sans, so matplotlib falls back to it glyph by glyph (a list of families, matplotlib >= 3.6). A character that no
listed font has is drawn as its escape (``\\u0e01``: ``shown``) rather than as a box, and text is never parsed as
mathtext (``picture_style``): a class name may hold ``$``. Pictures composed with PIL (no matplotlib axes: the
sample grids, drawn once per class) use the same font files, glyph by glyph the same way (``text_runs``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import PIL.ImageFont

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
def _font_files() -> tuple[tuple[str, frozenset[int]], ...]:
    """The file of each of ``font_families`` and the characters it has."""
    from matplotlib import font_manager

    paths = [
        font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        for family in font_families()
    ]
    return tuple((path, frozenset(font_manager.get_font(path).get_charmap())) for path in paths)


@lru_cache(maxsize=1)
def _charmap() -> frozenset[int]:
    return frozenset().union(*(codes for _, codes in _font_files()))


@lru_cache(maxsize=32)
def _pil_font(path: str, pixels: int) -> PIL.ImageFont.FreeTypeFont:
    """The face of ``path`` that matplotlib uses (a collection's face of the first of ``CJK_FAMILIES`` it has)."""
    import PIL.ImageFont

    for index in range(len(CJK_FAMILIES) if path.endswith((".ttc", ".otc")) else 1):
        font = PIL.ImageFont.truetype(path, pixels, index=index)
        if font.getname()[0] in font_families():
            return font
    return PIL.ImageFont.truetype(path, pixels)


def text_runs(text: str, pixels: int) -> list[tuple[PIL.ImageFont.FreeTypeFont, str]]:
    """``shown(text)`` cut into runs, each with the first of the fonts that has its characters: what PIL draws
    one after the other, as matplotlib falls back glyph by glyph."""
    runs: list[tuple[str, list[str]]] = []
    for char in shown(text):
        path = next((path for path, codes in _font_files() if ord(char) in codes), None)
        if runs and (path is None or path == runs[-1][0]):
            runs[-1][1].append(char)
        else:
            runs.append((path or _font_files()[0][0], [char]))
    return [(_pil_font(path, pixels), "".join(chars)) for path, chars in runs]


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
