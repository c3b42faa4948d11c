"""The simulated cloud: a Hetzner Cloud API subset and the virtual agent VPSes, as one in-memory ASGI app.

It models the outside world, so it shares no code with ``smoke.domain`` or ``smoke.adapters``: a wire-format
bug in an adapter shows up against it instead of being mirrored. ``create_cloud_simulator()`` returns a plain
ASGI callable (``http`` and ``lifespan`` scopes); each call makes an independent simulator. Serve it with
``smoke.serving.serve_asgi`` or uvicorn.

``/v1/...`` - Hetzner Cloud (docs/simulated-cloud.md),
enough for the official clients (hcloud-python, the Go CLI): servers (create, get, list by ``name``,
``label_selector``, ``status``, ``sort``, ``page``, ``per_page``; ``PUT`` name and labels; delete; the power actions
``poweron``, ``poweroff``, ``shutdown``, ``reboot``, ``reset``), actions (``/v1/actions/{id}``,
``/v1/actions?id=..``, ``/v1/servers/actions/{id}``, ``/v1/servers/{id}/actions[/{action_id}]``), SSH keys and
firewalls (with ``set_rules``, ``apply_to_resources``, ``remove_from_resources``), and the read-only catalogue
``/v1/locations``, ``/v1/server_types``, ``/v1/images`` (also by ID; images of one name for ``x86`` and ``arm``). No
``datacenter`` anywhere. Bearer token, the error envelope, the project's token bucket and ``RateLimit-*``/
``X-Correlation-Id`` headers on every API answer; actions progress lazily on the clock (:mod:`.hetzner.cloud`),
as fast or as slow as the timing says (:mod:`.hetzner.timing`); ``per_page`` is clamped to 50
(:mod:`.hetzner.listing`); order of checks and faults in :mod:`.hetzner.api`.

``/agents/{server_id}/...`` - each server's agent (docs/api.md's agent protocol, :mod:`.agent.api`), by ``agents=``:

- ``inline`` (default): ``GET healthz`` and ``POST v1/chat``, configured by the server's cloud-init user data
  (accepted subset in :mod:`.agent.user_data`). The agent echoes the message one ``delta`` per word, reports
  usage to ``usage_url`` and ends with ``done``.
- ``process``: each booted server carries out its user data as cloud-init would, under a directory of its own
  (``write_files`` re-rooted; the unit its ``runcmd`` starts run as a real process on a loopback port;
  :mod:`.agent.processes`), and every request under ``/agents/{id}/`` is relayed to that process as it streams
  (:mod:`.agent.proxy`). The process ends when the server is deleted, powered off, rebooted (then starts again),
  at ``POST /_sim/reset`` and at lifespan shutdown.

``/_sim/...`` - control, no auth:

- ``GET /_sim/state`` -> ``{"servers": [{"id", "name", "status", "labels", "location", "server_type",
  "image", "ipv4", "created", "agent"}], "requests": {"<METHOD> <route template>": count}, "chats": [{"server_id",
  "message", "started_at", "ended_at", "outcome", "client_disconnected"}]}``. Requests are counted for matched
  ``/v1`` and ``/agents`` routes, faulted ones included. A chat record is added when a stream starts;
  ``ended_at`` is set when it ends, however it ends. ``agent`` is ``{"mode": "inline", "pid": null, "root": null}``,
  or for a process agent ``{"mode": "process", "pid", "root", "port", "state", "service", "command", "exit_code",
  "problem", "log", "files", "skipped_commands", "ignored_units"}`` (:meth:`.agent.processes.ProcessAgents.describe`).
- ``POST /_sim/reset`` -> the fresh state: no servers, SSH keys, firewalls, counts, chats or faults, a full
  bucket, a re-seeded random generator. IDs keep counting, so a stale ID never names a new resource.
- ``GET /_sim/faults`` -> the current faults; ``PUT /_sim/faults`` with any subset of ``{"hetzner": {"latency_ms",
  "rate_limit_ratio", "error_ratio", "unavailable_ratio", "gateway_error_ratio", "drop_create_response_ratio",
  "placement_error_ratio", "unavailable", "action_error_ratio"}, "agent": {"token_delay_ms", "down",
  "fail_mid_stream_ratio"}}`` -> the full current faults; an unknown key, a value out of range or a sold-out pair
  naming an unknown location or server type -> 422 ``{"detail": str}`` (:mod:`.faults`).

Dropped connections (``drop_create_response_ratio``, ``fail_mid_stream_ratio``): under uvicorn the app closes
the request's TCP transport itself, on asyncio's loop and on uvloop's alike. A dropped create sends not a byte:
httpx raises ``RemoteProtocolError`` ("Server disconnected without sending a response"), requests/hcloud raise
``ConnectionError``; the server exists all the same. A stream cut after its first ``delta`` ends in the middle of
the chunked body: httpx raises ``RemoteProtocolError`` while reading. Under a server that hides its transport the
app raises instead, and that server closes the connection (after a 500 status line when nothing was sent yet).
"""

from smoke.simulators.app import create_cloud_simulator
from smoke.simulators.asgi import ASGIApp

__all__ = ("ASGIApp", "create_cloud_simulator")
