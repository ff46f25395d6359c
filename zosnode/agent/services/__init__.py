"""Service supervision: a sans-IO state machine (`machine`) and its trio runner (`runner`)."""
