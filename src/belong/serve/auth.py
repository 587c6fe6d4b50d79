"""Who is calling: ``Authorization: Bearer <credential>``, an API key or a user token (:mod:`belong.serve.tokens`).

Roles: read keys read any user's answers; write keys also write events; admin keys also manage models (each role
implies the ones before it). A user token reads only its own user's recommendations and similar users.

401 when the header is missing, malformed or names no valid credential (with ``WWW-Authenticate: Bearer``; one
message whether or not a key of that shape exists, and no lockout: failures never count against a key); 403 when
the credential is valid but not allowed on the route. Keys are found by their SHA-256 digest and token
signatures compared in constant time, so response times say nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
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
    """A key's SHA-256 (hex): keys are looked up by digest, so the lookup's time says nothing about how much of a
    guess matched a real key (and no raw key is kept as a dictionary key or a bucket name)."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyChecker:
    def __init__(self, write_keys: frozenset[str], admin_keys: frozenset[str],
                 read_keys: frozenset[str] = frozenset(), token_secret: str | None = None,
                 app: str = "default") -> None:
        self.write_keys = write_keys
        self.admin_keys = admin_keys
        self.read_keys = read_keys
        self.token_secret = token_secret
        self.app = app
        self._keys: dict[str, Principal] = {}
        for role, keys in ((Role.READ, read_keys), (Role.WRITE, write_keys), (Role.ADMIN, admin_keys)):
            for k in keys:  # a key listed under several roles gets the strongest
                digest = key_digest(k)
                self._keys[digest] = Principal(role, None, "key:" + digest[:24])

    def identify(self, header: str | None) -> Principal:
        """Who the header's credential is (AuthError 401 when nobody)."""
        key = credential_of(header)
        known = self._keys.get(key_digest(key))
        if known is not None:
            return known
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
