"""The load benchmark of minor-illusion: `python -m bench.load` (see `bench/load.py`).

Kept outside `app/` on purpose: nothing here ships in the image or runs in the tests; it
starts its own database, service and load generator, measures, and stops them all again.
"""
