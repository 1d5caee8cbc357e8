"""Keys, certificates, CSRs, CRLs and PEM bundles (pure: no I/O but the caller's bytes), and the
CRL policy.

See docs/ARCHITECTURE.md for the layers."""
