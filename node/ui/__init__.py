"""Seeing results: the read-only web UI (`gridpoint ui`) and the pictures of `gridpoint plot`.

The code is organized as follows:
- ``views.py``: the catalog page and curve panels, read from the node's store and home (no
  web framework), on node/record_views.py, which the command line shares;
- ``studies.py``: this node's Optuna studies, read with plain SQL from their storage;
- ``importance.py``: hyperparameter importances, computed by Optuna in a child process
  (`python -m gridpoint.trainers.importance`), kept in memory;
- ``warm_start_view.py``: what the Warm start page shows of the reports `tune --warm-start`
  keeps beside its study (node/study_reports.py);
- ``federations.py``: what `fed host` wrote in the home (per-round journal, result);
- ``lineage.py``: a model's lineage as a graph (records, models, derived work) and its chart;
- ``charts.py``: panels of curves, independent of how they are drawn;
- ``plots.py``: panels drawn by matplotlib (PNG/SVG for `gridpoint plot`);
- ``figures.py``: panels and charts as plotly.js figures for the pages (drawn in the browser
  by the plotly.js the node serves, with ``static/charts.js``);
- ``study_figures.py``: the Study page's figures (history, parallel coordinates, slices,
  contour, learning curves, importances);
- ``context.py``: what every page works with (home, store, templates, held models);
- ``catalog_pages.py``, ``study_pages.py``, ``model_pages.py``, ``federation_pages.py``: the
  pages, by what they show;
- ``guard.py``: who may ask (loopback host names, or the token) and the security headers;
- ``app.py``: the FastAPI app (pages, assets, errors as pages); ``serve.py`` runs it.

Must never write to the store, import the training stack (torch, transformers, optuna, flwr),
or load anything from another host: every script, style and font is served by the node.
"""
