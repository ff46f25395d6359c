"""A TPM 2.0 as the node's identity root: a sans-IO command codec (`codec`)
and a thin device shell (`device`) that derives the node seed inside the TPM.
See docs/identity.md."""
