"""The virtual agent VPSes (``/agents/{server_id}``)."""
