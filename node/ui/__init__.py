"""Seeing results: the read-only web UI (`gridpoint ui`) and the pictures of `gridpoint plot`.

The code is organized as follows:
- ``views.py``: the catalog page and curve charts, read from the node's store and home (no
  web framework), on node/record_views.py, which the command line shares;
- ``studies.py``: this node's Optuna studies, read with plain SQL from their storage;
- ``federations.py``: what `fed host` wrote in the home (per-round journal, result);
- ``charts.py``: what a chart shows (panels, series), apart from how it is drawn;
- ``plots.py``: every chart, drawn by matplotlib (SVG for pages, PNG/SVG for files);
- ``app.py``: the FastAPI app (routes, templates, token check); ``serve.py`` runs it.

The warm-start reports of the Study page are read through node/study_reports.py.

Must never write to the store, import the training stack (torch, transformers, optuna, flwr),
or load anything from another host: every script, style and font is served by the node.
"""
