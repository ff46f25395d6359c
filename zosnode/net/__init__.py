"""Node network bring-up: firewall, links, DHCPv4, SLAAC, listening-socket audit.

Pure cores (`dhcp_wire`, `dhcp_client`, `choose`, `audit`, `firewall` rule
construction) take bytes and time as arguments; the trio/netlink shells
(`dhcp_io`, `links`, `firewall.apply`) are thin.
"""
