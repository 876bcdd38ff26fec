"""Column names of a dataset in our layout that the readers share (scorers, filters, summary, pictures, quality);
the builder's columns are the fields of ``builders.rows.GeneratedRow``."""

ID = "id"
IMAGE = "image"
LABEL = "label"

DROPPED_SUFFIX = "_dropped"  # split of the rows the filters set aside: ``<split>_dropped``
