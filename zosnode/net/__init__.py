"""Node network bring-up: pure cores (wire, client, checks, choice) and thin trio/netlink shells."""
