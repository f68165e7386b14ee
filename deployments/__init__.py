"""Deployment definitions of the perfspec flows (prefect.yaml, serve) and test-cluster configs."""
