"""Domain services: each does one thing the product promises, through ports only."""

from smoke.domain.services.account import AccountCheck
from smoke.domain.services.chat_relay import ChatRelay, ChatTurn
from smoke.domain.services.cleaner import Cleaner
from smoke.domain.services.dashboard import Dashboard, Overview
from smoke.domain.services.deleter import Deleter
from smoke.domain.services.firewall import AgentFirewall, FirewallPolicy
from smoke.domain.services.lookup import InstanceLookup
from smoke.domain.services.provisioner import Provisioner, ProvisionPolicy, ServerWatch
from smoke.domain.services.reconciler import ReconcilePolicy, Reconciler, ReconcileReport
from smoke.domain.services.requests import ProvisionRequests, SpendGuard
from smoke.domain.services.usage_reader import UsageReader
from smoke.domain.services.usage_recorder import UsageRecorder

__all__ = (
    "AccountCheck",
    "AgentFirewall",
    "ChatRelay",
    "ChatTurn",
    "Cleaner",
    "Dashboard",
    "Deleter",
    "FirewallPolicy",
    "InstanceLookup",
    "Overview",
    "ProvisionPolicy",
    "ProvisionRequests",
    "Provisioner",
    "ReconcilePolicy",
    "ReconcileReport",
    "Reconciler",
    "ServerWatch",
    "SpendGuard",
    "UsageReader",
    "UsageRecorder",
)
