"""The CA store: CaStore, its sqlite inventory, store files, the openssl-index import, locks,
atomic files.

See docs/ARCHITECTURE.md for the layers."""
