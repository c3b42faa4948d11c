"""Domain services: each does one thing the product promises, through ports only."""

from smoke.domain.services.cleaner import Cleaner
from smoke.domain.services.provisioner import Provisioner
from smoke.domain.services.usage_reader import UsageReader

__all__ = ("Cleaner", "Provisioner", "UsageReader")
