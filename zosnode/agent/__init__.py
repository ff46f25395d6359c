"""The node agent: everything `zosnode node run` does as PID 1."""
