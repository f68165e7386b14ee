"""Reading and cleaning Kubernetes audit logs.

``sources`` opens files (compression and format sniffed from the bytes, not the name), ``readers``
turns them into event rows, ``clean.clean_sources`` writes the typed ``events.parquet`` described in
ARCHITECTURE.md. Request/response bodies are parsed past but never stored anywhere.
"""
