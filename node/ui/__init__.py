"""Seeing results: the read-only web UI (`gridpoint ui`) and the pictures of `gridpoint plot`.

The code is organized as follows:
- ``views.py``: what a page shows, read from the node's store and home (no web framework);
- ``studies.py``: this node's Optuna studies, read with plain SQL from their storage;
- ``federations.py``: what `fed host` wrote in the home (per-round journal, result);
- ``study_reports.py``: the warm-start report `tune --warm-start` keeps beside its study;
- ``plots.py``: every chart, drawn by matplotlib (SVG for pages, PNG/SVG for files);
- ``app.py``: the FastAPI app (routes, templates, token check); ``serve.py`` runs it.

Must never write to the store, import the training stack (torch, transformers, optuna, flwr),
or load anything from another host: every script, style and font is served by the node.
"""
