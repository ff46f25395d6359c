"""zosnode: a network-booted, stateless, no-shell server node."""

__version__ = "0.1.0"
