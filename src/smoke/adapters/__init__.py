"""Adapters: the ports implemented on real technology. Only ``smoke.bootstrap`` chooses among them."""
