"""Auditing a fleet of releases: ``weightaudit batch`` into SQLite, resumable, local or on Dask, and the fleet report.

Modules by job: ``sources`` (SOURCES -> releases), ``content_key`` (what "unchanged" means), ``db`` (schema and
migrations; one writer), ``task`` (what a worker runs for one release), ``engine``/``engine_local``/``engine_dask``
(where it runs), ``runner`` (orchestration), ``progress`` (stderr), ``fleet_report``/``render_*`` (the report).
"""
