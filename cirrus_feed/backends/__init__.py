"""Backends: one Protocol per port in `base`, a `local` and an `aws` adapter for each."""
