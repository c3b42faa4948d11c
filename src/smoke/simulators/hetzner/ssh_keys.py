"""SSH keys: ``/v1/ssh_keys``, and the ``ssh_keys`` of a server create (IDs or names).

A public key is ``<type> <base64 blob> [comment]`` with one of the types the API lists in its error message; the
blob must decode and start with that type, as an OpenSSH key does. The fingerprint is the MD5 of the blob in
colon-separated hex (what ``ssh-keygen -E md5 -l`` and hcloud-go's ``FingerprintLegacyMD5`` print). Names and
fingerprints are unique in the project (409 ``uniqueness_error``). A key in use by servers can be deleted: it was
only copied onto them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import msgspec

from smoke.simulators.hetzner.errors import api_error, invalid_field, not_found
from smoke.simulators.hetzner.listing import Query, first, paginate, sorted_by
from smoke.simulators.hetzner.timestamps import rfc3339
from smoke.simulators.hetzner.validation import check_labels, decode_request, label_filter

__all__ = ("SshKey", "SshKeys")

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-dss",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_INVALID_TYPE = (
    "SSH key type is invalid (supported types: ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, "
    "ecdsa-sha2-nistp521, ssh-dss, sk-ssh-ed25519, sk-ecdsa-sha2-nistp256)"
)


class _CreateRequest(msgspec.Struct):
    name: str
    public_key: str
    labels: dict[str, str] = {}


class _UpdateRequest(msgspec.Struct):
    name: str | None = None
    labels: dict[str, str] | None = None


@dataclass(slots=True, eq=False)
class SshKey:
    id: int
    name: str
    public_key: str
    fingerprint: str
    labels: dict[str, str]
    created: float

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "labels": dict(self.labels),
            "created": rfc3339(self.created),
        }


_SORT_KEYS: Mapping[str, Callable[[SshKey], object]] = {"id": lambda k: k.id, "name": lambda k: k.name}


class SshKeys:
    def __init__(self, ids: Iterator[int]) -> None:
        self._ids = ids
        self._keys: dict[int, SshKey] = {}

    def create(self, body: bytes, now: float) -> dict[str, object]:
        request = decode_request(body, _CreateRequest)
        self._check_name(request.name)
        check_labels(request.labels)
        public_key = request.public_key.strip()
        fingerprint = _fingerprint(public_key)
        if any(key.fingerprint == fingerprint for key in self._keys.values()):
            message = "SSH key with the same fingerprint already exists"
            raise api_error(409, "uniqueness_error", message, {"fields": [{"name": "public_key"}]})
        key = SshKey(next(self._ids), request.name, public_key, fingerprint, dict(request.labels), now)
        self._keys[key.id] = key
        return {"ssh_key": key.to_json()}

    def get(self, key_id: int) -> dict[str, object]:
        return {"ssh_key": self._existing(key_id).to_json()}

    def listing(self, query: Query) -> dict[str, object]:
        matches = label_filter(query)
        keys = [key for key in self._keys.values() if matches(key.labels)]
        if name := first(query, "name"):
            keys = [key for key in keys if key.name == name]
        if fingerprint := first(query, "fingerprint"):
            keys = [key for key in keys if key.fingerprint == fingerprint]
        page, meta = paginate(sorted_by(keys, query, _SORT_KEYS), query)
        return {"ssh_keys": [key.to_json() for key in page], "meta": {"pagination": meta}}

    def update(self, key_id: int, body: bytes) -> dict[str, object]:
        key = self._existing(key_id)
        request = decode_request(body, _UpdateRequest)
        if request.name is not None:
            self._check_name(request.name, renamed=key)
            key.name = request.name
        if request.labels is not None:
            check_labels(request.labels)
            key.labels = dict(request.labels)
        return {"ssh_key": key.to_json()}

    def delete(self, key_id: int) -> None:
        del self._keys[self._existing(key_id).id]

    def resolve(self, refs: list[str | int]) -> list[SshKey]:
        """The keys a server create names, by ID (a number) or name (a string); 422 for one that does not exist."""
        found: list[SshKey] = []
        for ref in refs:
            key = next((k for k in self._keys.values() if (k.id if isinstance(ref, int) else k.name) == ref), None)
            if key is None:
                raise invalid_field("ssh_keys", f"SSH key '{ref}' not found")
            found.append(key)
        return found

    def _existing(self, key_id: int) -> SshKey:
        if (key := self._keys.get(key_id)) is None:
            raise not_found("SSH key", key_id)
        return key

    def _check_name(self, name: str, *, renamed: SshKey | None = None) -> None:
        if not name.strip():
            raise invalid_field("name", "must not be empty")
        if any(key.name == name and key is not renamed for key in self._keys.values()):
            message = "SSH key with the same name already exists"
            raise api_error(409, "uniqueness_error", message, {"fields": [{"name": "name"}]})


def _fingerprint(public_key: str) -> str:
    """The MD5 fingerprint of an OpenSSH public key line; 422 on ``public_key`` if it is not one."""
    key_type, _, rest = public_key.partition(" ")
    if key_type not in KEY_TYPES:
        raise invalid_field("public_key", _INVALID_TYPE)
    try:
        blob = base64.b64decode(rest.split(" ", 1)[0], validate=True)
    except binascii.Error:
        blob = b""
    if blob[4 : 4 + len(key_type)] != key_type.encode():
        raise invalid_field("public_key", "SSH key is invalid")
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
