"""Who is calling: ``Authorization: Bearer <credential>``, an API key or a user token (:mod:`belong.serve.tokens`).

Roles: read keys read any user's answers; write keys also write events; admin keys also manage models (each role
implies the ones before it). A user token reads only its own user's recommendations and similar users.

401 when the header is missing, malformed or names no valid credential (with ``WWW-Authenticate: Bearer``; one
message whether or not a key of that shape exists, and no lockout: failures never count against a key); 403 when
the credential is valid but not allowed on the route. Keys are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from belong.serve import tokens


class Role(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_RANK = {Role.READ: 0, Role.WRITE: 1, Role.ADMIN: 2}
INVALID = "invalid API key or token"


class AuthError(Exception):
    """Refused: ``status`` is 401 or 403, ``message`` says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a key's role, or a user token's user (``role`` READ, ``user_id`` set)."""

    role: Role
    user_id: str | None = None
    #: stable, non-secret id of the credential (rate limits): a key's digest or the token's app and user
    bucket: str = ""


def _known(key: str, keys: frozenset[str]) -> bool:
    found = False
    for k in keys:  # no early exit: the time does not depend on which key matched
        found |= hmac.compare_digest(key.encode(), k.encode())
    return found


def credential_of(header: str | None) -> str:
    """The credential of an Authorization header (AuthError 401 when missing or malformed)."""
    if not header:
        raise AuthError(401, "missing API key: send the header 'Authorization: Bearer <key or token>'")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise AuthError(401, "malformed Authorization header: expected 'Bearer <key or token>'")
    return key


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class KeyChecker:
    def __init__(self, write_keys: frozenset[str], admin_keys: frozenset[str],
                 read_keys: frozenset[str] = frozenset(), token_secret: str | None = None,
                 app: str = "default") -> None:
        self.write_keys = write_keys
        self.admin_keys = admin_keys
        self.read_keys = read_keys
        self.token_secret = token_secret
        self.app = app

    def identify(self, header: str | None) -> Principal:
        """Who the header's credential is (AuthError 401 when nobody)."""
        key = credential_of(header)
        for role, keys in ((Role.ADMIN, self.admin_keys), (Role.WRITE, self.write_keys), (Role.READ, self.read_keys)):
            if _known(key, keys):
                return Principal(role, None, "key:" + key_digest(key))
        if self.token_secret and tokens.looks_like_token(key):
            user = tokens.verify(self.token_secret, self.app, key)
            if user is not None:
                return Principal(Role.READ, user, f"user:{self.app}:{user}")
        raise AuthError(401, INVALID)

    def authorize(self, header: str | None, role: Role) -> Principal:
        """The caller, if their credential suffices for ``role``; raises :class:`AuthError` otherwise."""
        who = self.identify(header)
        if _RANK[who.role] < _RANK[role]:
            what = "a user token" if who.user_id is not None else f"this {who.role.value} key"
            raise AuthError(403, f"{what} may not do this ({role.value} key needed)")
        return who

    def check(self, header: str | None, role: Role) -> Role:
        """The role the header's key grants, if it suffices for ``role``; raises :class:`AuthError` otherwise."""
        return self.authorize(header, role).role
