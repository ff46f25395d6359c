"""The single-file artifact's build record and native-code unpacker (stdlib only: first)."""
