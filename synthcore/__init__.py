"""The ground floor every part of synthdata stands on.

What the dataset builder (``builders``), the scorers (``eval``) and the probe (``training``) all use, and nothing
that belongs to one of them: where models come from (``model_refs``, ``tiny``), the accelerate launch and state
(``launch``), logging (``logs``), the Hub's Parquet layout and card metadata (``layout``, ``readback``,
``cardmeta``), the dataset's column names (``columns``) and talking to the Hub (``hub``). It imports nothing of
``builders``, ``eval`` or ``training`` (``tests/test_layers.py`` enforces it).
"""
