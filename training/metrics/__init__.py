"""Metric modules shipped with the project, loaded by path with ``evaluate.load`` so they work offline.

Each sub-directory holds one ``evaluate.Metric`` (``<name>/<name>.py``); sklearn does the arithmetic.
"""
