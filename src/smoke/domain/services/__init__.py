"""Domain services: each does one thing the product promises, through ports only."""

from smoke.domain.services.builder import BuildPolicy, InstanceBuilder
from smoke.domain.services.chat_relay import ChatRelay, ChatTurn
from smoke.domain.services.cleaner import Cleaner
from smoke.domain.services.decommissioner import Decommissioner
from smoke.domain.services.lookup import InstanceLookup
from smoke.domain.services.provisioner import Provisioner
from smoke.domain.services.reconciler import ReconcilePolicy, Reconciler, ReconcileReport
from smoke.domain.services.usage_reader import UsageReader
from smoke.domain.services.usage_recorder import UsageRecorder

__all__ = (
    "BuildPolicy",
    "ChatRelay",
    "ChatTurn",
    "Cleaner",
    "Decommissioner",
    "InstanceBuilder",
    "InstanceLookup",
    "Provisioner",
    "ReconcilePolicy",
    "ReconcileReport",
    "Reconciler",
    "UsageReader",
    "UsageRecorder",
)
