"""netstack: container networking (slirp4netns driver, port forwarding,
resolv.conf/hosts generation, netlink setup inside the namespace).

Only ``netstack/netlink.py`` imports pyroute2.
"""
