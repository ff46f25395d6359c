"""Test infrastructure that starts real components (namespaces, daemons)."""
