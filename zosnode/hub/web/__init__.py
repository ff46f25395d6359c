"""The hub's web pages: boot media for farmers, the fleet and releases for operators.

Server-rendered HTML, no JavaScript, one stylesheet; every page has a JSON
twin under /api/v1/ (docs/hub-api.md). Hub code only: a node never imports it.
"""
