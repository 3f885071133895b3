"""The database layer: engine lifecycle, the one scope units of work run in, the driver
path for prebuilt statements, URLs and TLS, the embedded PostgreSQL and migrations.

Nothing here knows the tables: those are in app.models.
"""
