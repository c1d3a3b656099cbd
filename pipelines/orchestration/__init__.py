"""Orchestration: Prefect flows, their reports and deployments, and DVC from a flow."""
