"""Network-namespace test lab (client — NAT — server) for NAT, firewall and loss tests."""
