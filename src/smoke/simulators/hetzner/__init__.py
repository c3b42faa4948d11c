"""The simulated Hetzner Cloud API (``/v1``)."""
