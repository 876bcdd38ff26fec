"""Parquet: ``data/`` in the Hub's layout, the dataset itself. The build's export writes it (``builders.export``);
it is the source of every other format, of resume and verification, and of what the Hub's card points at, so it is
always written, listed in ``formats`` or not."""

from __future__ import annotations

from builders.formats.base import ExportFormat


class Parquet(ExportFormat):
    name = "parquet"
    folder = None
