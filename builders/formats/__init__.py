"""Formats beside the Parquet dataset, as plug-ins: the recipe's ``formats`` names them, ``registry.FORMATS`` holds
them, ``export.export_formats`` writes them from the finished dataset (``source.SourceData``)."""
