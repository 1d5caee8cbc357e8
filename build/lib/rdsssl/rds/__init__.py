"""The RDS API: the SDK adapter (the only SDK importer), response parsing, waiters, service
profiles.

See docs/ARCHITECTURE.md for the layers."""
