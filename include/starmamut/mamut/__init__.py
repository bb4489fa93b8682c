"""The Mamut side: schema map, pyodbc gateway, product repository and the mock company database.

Modules: ``schema_map`` (logical → physical names and types), ``gateway`` (portable parameterised SQL
over pyodbc, transactions, secret redaction), ``articles`` (pure dataclasses the mappers build),
``products`` (idempotent product/variant writes), ``mock`` (creates and seeds the mock company
database on SQLite or PostgreSQL; ``python -m starmamut.mamut.mock --help``).
"""
