"""The Mamut side: schema map, pyodbc gateway and the repositories that read and write the company database.

Modules: ``schema_map`` (logical → physical names and types), ``gateway`` (portable parameterised SQL
over pyodbc, transactions, secret redaction), ``articles`` (pure dataclasses the mappers build),
``products`` (idempotent product/variant writes). The mock company database the demo and the tests use is
dev tooling, outside the engine: ``starmamut_devtools.mamut_mock`` (``python -m starmamut_devtools mamut-mock --help``).
"""
