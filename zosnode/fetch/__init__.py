"""Verified fetching of content-addressed objects from several hubs and mirrors."""
