"""Sync jobs: each one an extract → validate → load → report pipeline that a DAG wires into tasks."""
