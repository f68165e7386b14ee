"""Thin Prefect tasks over the perfspec library (see ARCHITECTURE.md, layer `tasks/`)."""
