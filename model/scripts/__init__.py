"""Command-line programs of Exercise 2, run with python -m model.scripts.NAME (shared parts: model/cli.py)."""
