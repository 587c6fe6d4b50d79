"""API keys: ``Authorization: Bearer <key>``. Write routes take write or admin keys; admin routes admin keys.

401 when the header is missing, malformed or names no known key (with ``WWW-Authenticate: Bearer``); 403 when
the key is valid but not allowed on the route. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from enum import StrEnum


class Role(StrEnum):
    WRITE = "write"
    ADMIN = "admin"


class AuthError(Exception):
    """Refused: ``status`` is 401 or 403, ``message`` says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _known(key: str, keys: frozenset[str]) -> bool:
    found = False
    for k in keys:  # no early exit: the time does not depend on which key matched
        found |= hmac.compare_digest(key.encode(), k.encode())
    return found


class KeyChecker:
    def __init__(self, write_keys: frozenset[str], admin_keys: frozenset[str]) -> None:
        self.write_keys = write_keys
        self.admin_keys = admin_keys

    def check(self, header: str | None, role: Role) -> Role:
        """The role the header's key grants, if it suffices for ``role``; raises :class:`AuthError` otherwise."""
        if not header:
            raise AuthError(401, "missing API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthError(401, "malformed Authorization header: expected 'Bearer <key>'")
        if _known(key, self.admin_keys):
            return Role.ADMIN
        if _known(key, self.write_keys):
            if role is Role.ADMIN:
                raise AuthError(403, "this API key may write events but not manage models (admin key needed)")
            return Role.WRITE
        raise AuthError(401, "invalid API key")
