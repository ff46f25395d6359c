"""The node's block cache: bounded, LRU, every entry checksummed."""
