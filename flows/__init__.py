"""Prefect flows composing the tasks: prepare, train, pipeline, collect (see ARCHITECTURE.md)."""
