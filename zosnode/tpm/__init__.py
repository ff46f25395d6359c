"""The TPM 2.0 the node identity comes from: codec (sans-IO), device; docs/identity.md."""
