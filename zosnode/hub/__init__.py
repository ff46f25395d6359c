"""The hub: serves releases, flists and blocks; accepts signed publications.

`keys` names objects in the shared DATA layout, `storage` holds them (a local
directory or an S3 bucket), `app` routes HTTP requests, `publish` decides what
may be accepted, `registry` keeps node heartbeats and `metrics` counts.
"""
