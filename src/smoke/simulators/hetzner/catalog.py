"""The simulated cloud's catalogue: locations, server types and images, as the Hetzner API shows them.

Specs and prices are cosmetic (close to the real ones in 2026); what matters is the names, which location
offers which type (``cx*`` and the Arm ``cax*`` types are EU only), each type's architecture, and the JSON shapes.
Every system image exists once per architecture under one name (``ubuntu-24.04`` for ``x86`` and for ``arm``, the
``arm`` one with the higher ID, as at Hetzner), so a name resolves per server type.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ("ARCHITECTURES", "CATALOG", "Catalog", "Image", "Location", "ServerType")

ARCHITECTURES = ("x86", "arm")

_TIB = 1024**4
_VAT = Decimal("1.19")
_HOURS_PER_MONTH = 730
_CATALOG_CREATED = "2024-04-25T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Location:
    id: int
    name: str
    description: str
    country: str
    city: str
    latitude: float
    longitude: float
    network_zone: str
    included_traffic: int

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "country": self.country,
            "city": self.city,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "network_zone": self.network_zone,
        }


@dataclass(frozen=True, slots=True)
class ServerType:
    id: int
    name: str
    description: str
    category: str
    architecture: str
    cores: int
    memory: int
    disk: int
    monthly_net_eur: Decimal
    locations: tuple[Location, ...]

    def to_json(self, sold_out_in: frozenset[str] = frozenset()) -> dict[str, object]:
        """The API object; ``sold_out_in`` names the locations where it cannot be ordered now (``available: false``)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "cores": self.cores,
            "memory": self.memory,
            "disk": self.disk,
            "cpu_type": "shared",
            "architecture": self.architecture,
            "storage_type": "local",
            "deprecated": False,
            "deprecation": None,
            "prices": [self._price(location) for location in self.locations],
            "locations": [
                {
                    "id": loc.id,
                    "name": loc.name,
                    "deprecation": None,
                    "available": loc.name not in sold_out_in,
                    "recommended": loc.name not in sold_out_in,
                }
                for loc in self.locations
            ],
        }

    def _price(self, location: Location) -> dict[str, object]:
        hourly = self.monthly_net_eur / _HOURS_PER_MONTH
        return {
            "location": location.name,
            "price_hourly": _amount(hourly),
            "price_monthly": _amount(self.monthly_net_eur),
            "included_traffic": location.included_traffic,
            "price_per_tb_traffic": _amount(Decimal(1)),
        }


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    name: str
    description: str
    os_flavor: str
    os_version: str
    architecture: str

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": "system",
            "status": "available",
            "name": self.name,
            "description": self.description,
            "image_size": None,
            "disk_size": 5,
            "created": _CATALOG_CREATED,
            "created_from": None,
            "bound_to": None,
            "os_flavor": self.os_flavor,
            "os_version": self.os_version,
            "architecture": self.architecture,
            "rapid_deploy": True,
            "protection": {"delete": False},
            "deprecated": None,
            "deleted": None,
            "labels": {},
        }


def _amount(net: Decimal) -> dict[str, str]:
    return {"net": f"{net:.4f}", "gross": f"{net * _VAT:.4f}"}


@dataclass(frozen=True, slots=True)
class Catalog:
    locations: tuple[Location, ...]
    server_types: tuple[ServerType, ...]
    images: tuple[Image, ...]

    def location(self, ref: str | int) -> Location | None:
        """The location with ID or name ``ref``."""
        return next((loc for loc in self.locations if _refers_to(ref, loc.id, loc.name)), None)

    def server_type(self, ref: str | int) -> ServerType | None:
        """The server type with ID or name ``ref``."""
        return next((st for st in self.server_types if _refers_to(ref, st.id, st.name)), None)

    def image(self, ref: str | int, architecture: str) -> Image | None:
        """The image with ID ``ref``, or the one named ``ref`` built for ``architecture``.

        An ID names one image whatever its architecture: the caller checks that it fits the server type.
        """
        return next(
            (
                img
                for img in self.images
                if str(ref) == str(img.id) or (ref == img.name and img.architecture == architecture)
            ),
            None,
        )

    def image_by_id(self, image_id: int) -> Image | None:
        return next((img for img in self.images if img.id == image_id), None)


def _refers_to(ref: str | int, id_: int, name: str) -> bool:
    return ref == name or str(ref) == str(id_)


def _build_catalog() -> Catalog:
    eu = (
        Location(1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071, "eu-central", 20 * _TIB),
        Location(2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665, "eu-central", 20 * _TIB),
        Location(3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379, "eu-central", 20 * _TIB),
    )
    elsewhere = (
        Location(4, "ash", "Ashburn, VA", "US", "Ashburn, VA", 39.045821, -77.487073, "us-east", _TIB),
        Location(5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", 45.54222, -122.951924, "us-west", _TIB),
        Location(6, "sin", "Singapore", "SG", "Singapore", 1.283333, 103.833333, "ap-southeast", _TIB // 2),
    )
    everywhere = eu + elsewhere
    server_types = (
        ServerType(108, "cpx12", "CPX 12", "regular_purpose", "x86", 1, 2, 40, Decimal("6.49"), everywhere),
        ServerType(109, "cpx22", "CPX 22", "regular_purpose", "x86", 2, 4, 80, Decimal("7.99"), everywhere),
        ServerType(110, "cpx32", "CPX 32", "regular_purpose", "x86", 4, 8, 160, Decimal("13.99"), everywhere),
        ServerType(111, "cpx42", "CPX 42", "regular_purpose", "x86", 8, 16, 320, Decimal("25.49"), everywhere),
        ServerType(112, "cpx52", "CPX 52", "regular_purpose", "x86", 12, 24, 480, Decimal("36.49"), everywhere),
        ServerType(114, "cx23", "CX 23", "cost_optimized", "x86", 2, 4, 40, Decimal("3.49"), eu),
        ServerType(115, "cx33", "CX 33", "cost_optimized", "x86", 4, 8, 80, Decimal("5.49"), eu),
        ServerType(45, "cax11", "CAX11", "cost_optimized", "arm", 2, 4, 40, Decimal("3.79"), eu),
        ServerType(93, "cax21", "CAX21", "cost_optimized", "arm", 4, 8, 80, Decimal("6.49"), eu),
        ServerType(94, "cax31", "CAX31", "cost_optimized", "arm", 8, 16, 160, Decimal("12.49"), eu),
        ServerType(95, "cax41", "CAX41", "cost_optimized", "arm", 16, 32, 320, Decimal("24.49"), eu),
    )
    images = (
        Image(161547269, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "x86"),
        Image(161547270, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "arm"),
        Image(67794396, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "x86"),
        Image(103908070, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "arm"),
        Image(114690387, "debian-12", "Debian 12", "debian", "12", "x86"),
        Image(114690389, "debian-12", "Debian 12", "debian", "12", "arm"),
    )
    return Catalog(everywhere, server_types, images)


CATALOG = _build_catalog()
