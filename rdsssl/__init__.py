"""rdsssl: client-certificate authentication for ApsaraDB RDS for PostgreSQL, safe to automate."""

__version__ = "0.1.0"
