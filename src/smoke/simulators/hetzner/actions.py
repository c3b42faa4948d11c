"""Actions: the API's record of every asynchronous change, settled lazily on the injected clock.

An action is ``running`` from the moment it is created. It makes progress from ``runs_from`` until ``ends_at``
(an action started ``after`` another one, such as the ``start_server`` that follows ``create_server``, makes none
until that one has ended), then ends in ``success``, or in ``error`` with ``{"code": "action_failed", "message":
"Action failed"}`` when it was drawn to fail (fault ``action_error_ratio``, drawn when it is created). A failed
action fails the action that was to follow it, at the same moment.

Whoever starts an action says what its end changes (``on_end``), so this module knows nothing of servers or
firewalls. A running action locks every resource it names: the API answers ``423 locked`` to another action on it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

from smoke.simulators.hetzner.listing import Query, paginate, sorted_by, statuses_filter
from smoke.simulators.hetzner.timestamps import rfc3339

__all__ = ("ACTION_FAILED", "Action", "ActionLog", "Resource")

ACTION_STATUSES = frozenset({"running", "success", "error"})
ACTION_FAILED = {"code": "action_failed", "message": "Action failed"}

Resource = tuple[str, int]
"""A resource an action concerns, as ``(type, id)``: ``("server", 42)``."""


@dataclass(slots=True, eq=False)
class Action:
    id: int
    command: str
    resources: tuple[Resource, ...]
    started: float
    runs_from: float
    ends_at: float
    fails: bool
    on_end: Callable[[Action], None] | None
    status: str = "running"
    finished: float | None = None
    followed_by: Action | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    def progress(self, now: float) -> int:
        if self.status != "running":
            return 100
        if now <= self.runs_from or self.ends_at <= self.runs_from:
            return 0
        return min(99, int(100 * (now - self.runs_from) / (self.ends_at - self.runs_from)))

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": self.progress(now),
            "started": rfc3339(self.started),
            "finished": None if self.finished is None else rfc3339(self.finished),
            "resources": [{"id": id_, "type": type_} for type_, id_ in self.resources],
            "error": ACTION_FAILED if self.status == "error" else None,
        }


_SORT_KEYS: Mapping[str, Callable[[Action], object]] = {
    "id": lambda a: a.id,
    "command": lambda a: a.command,
    "status": lambda a: a.status,
    "started": lambda a: a.started,
    "finished": lambda a: (a.finished is None, a.finished or 0.0),
}


class ActionLog:
    """Every action of the project, by ID.

    Args:
        ids: the action ID counter.
        fails: decides, when an action is created, whether it will fail.
    """

    def __init__(self, *, ids: Iterator[int], fails: Callable[[], bool]) -> None:
        self._ids = ids
        self._fails = fails
        self._actions: dict[int, Action] = {}
        self._running: dict[int, Action] = {}

    def start(
        self,
        command: str,
        resources: tuple[Resource, ...],
        now: float,
        seconds: float,
        *,
        after: Action | None = None,
        on_end: Callable[[Action], None] | None = None,
    ) -> Action:
        """A new running action that lasts ``seconds``; with ``after``, counted from the moment that one ends."""
        runs_from = now if after is None else after.ends_at
        action = Action(
            id=next(self._ids),
            command=command,
            resources=resources,
            started=now,
            runs_from=runs_from,
            ends_at=runs_from + seconds,
            fails=self._fails(),
            on_end=on_end,
        )
        if after is not None:
            after.followed_by = action
        self._actions[action.id] = action
        self._running[action.id] = action
        return action

    def settle(self, now: float) -> None:
        """End, in the order they end, the actions whose end is not after ``now``."""
        due = sorted((a for a in self._running.values() if a.ends_at <= now), key=lambda a: (a.ends_at, a.id))
        for action in due:
            if action.status == "running":
                self._end(action)

    def get(self, action_id: int) -> Action | None:
        return self._actions.get(action_id)

    def locks(self, resource: Resource) -> bool:
        """Whether a running action concerns ``resource``."""
        return any(resource in action.resources for action in self._running.values())

    def concerning(self, resource: Resource) -> list[Action]:
        return [action for action in self._actions.values() if resource in action.resources]

    def with_ids(self, ids: Collection[int]) -> list[Action]:
        return [action for action_id, action in self._actions.items() if action_id in ids]

    def page(self, actions: list[Action], query: Query, now: float) -> dict[str, object]:
        """The ``{"actions", "meta"}`` list body: ``actions`` filtered by ``status``, sorted and paginated."""
        if statuses := statuses_filter(query, ACTION_STATUSES):
            actions = [action for action in actions if action.status in statuses]
        page, meta = paginate(sorted_by(actions, query, _SORT_KEYS), query)
        return {"actions": [action.to_json(now) for action in page], "meta": {"pagination": meta}}

    def _end(self, action: Action) -> None:
        del self._running[action.id]
        action.status, action.finished = ("error" if action.fails else "success"), action.ends_at
        if action.on_end is not None:
            action.on_end(action)
        if action.fails and (follower := action.followed_by) is not None:
            follower.fails, follower.ends_at = True, action.ends_at
            self._end(follower)
