"""The domain: what smoke decides, in pure Python. Adapters, drivers and I/O live elsewhere."""
