"""Starweb ⇄ Mamut One Enterprise integration engine, importable and testable without a running Airflow."""
