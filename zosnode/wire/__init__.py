"""Wire formats shared by node, hub and publishing tools; pure code, time an argument."""
