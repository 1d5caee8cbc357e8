"""The use cases: plan/apply, guard, probe, renewal and deployment, CRL refresh, rotation, checks,
fleets, audit.

See docs/ARCHITECTURE.md for the layers."""
