"""Auditing a fleet of releases: ``weightaudit batch`` into SQLite, resumable, local or on Dask, and the fleet report.

Modules by job: ``sources`` (SOURCES -> releases), ``content_key`` (what "unchanged" means), ``db`` (schema and
migrations; one writer), ``task`` (what a worker runs for one release), ``split`` (a large release as per-file
stages merged into one report), ``work`` (the units engines hand out), ``engine``/``engine_local``/``engine_dask``
(where it runs), ``fault_hooks`` (test-only fault injection), ``runner`` (orchestration), ``progress`` (stderr),
``fleet_report``/``render_*`` (the report).
"""
