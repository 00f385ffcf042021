"""Licensing: signed license tokens, open-source mode without one (docs/licensing.md)."""
