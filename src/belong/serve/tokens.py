"""User tokens: a platform's backend mints one per signed-in user so that the user's own client may read that user's
recommendations (and similar users) and nothing else, without holding an API key.

Format (version ``bt1``), every part ASCII::

    bt1.<app>.<user>.<exp>.<sig>

* ``app``, ``user``: the app name and the user id, UTF-8, base64url without padding (``=`` stripped)
* ``exp``: expiry, integer seconds since the epoch (UTC); the token is refused from that second on
* ``sig``: base64url without padding of ``HMAC-SHA256(secret, "bt1.<app>.<user>.<exp>")``, the key being the server
  secret's UTF-8 bytes and the message the first four parts exactly as sent

Mint with ``belong token mint USER --ttl 3600`` or in a few lines of any language (docs/SECURITY_ACCESS.md has test
vectors). Tokens are checked in constant time; a bad, expired or foreign token is refused like an unknown key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

VERSION = "bt1"
MIN_SECRET_LEN = 32
MAX_TOKEN_LEN = 2048


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, message: str) -> str:
    return _b64(hmac.new(secret.encode(), message.encode("ascii"), hashlib.sha256).digest())


def mint(secret: str, app: str, user_id: str, expires_at: int) -> str:
    """A token letting ``user_id`` of ``app`` read their own recommendations until ``expires_at`` (epoch s)."""
    body = f"{VERSION}.{_b64(app.encode())}.{_b64(user_id.encode())}.{int(expires_at)}"
    return f"{body}.{_sign(secret, body)}"


def looks_like_token(credential: str) -> bool:
    return credential.startswith(VERSION + ".") and credential.count(".") == 4


def verify(secret: str, app: str, token: str, now: float | None = None) -> str | None:
    """The user id ``token`` names when it is well formed, signed with ``secret``, for ``app`` and not expired;
    ``None`` otherwise (the caller answers every refusal the same way)."""
    if len(token) > MAX_TOKEN_LEN or not looks_like_token(token):
        return None
    body, _, sig = token.rpartition(".")
    expected = _sign(secret, body)
    if not hmac.compare_digest(expected.encode(), sig.encode("ascii", "replace")):
        return None
    _, app_b64, user_b64, exp = body.split(".")
    try:
        token_app = _unb64(app_b64).decode()
        user = _unb64(user_b64).decode()
        expires_at = int(exp)
    except (ValueError, UnicodeDecodeError):
        return None
    if token_app != app or not user or expires_at <= (time.time() if now is None else now):
        return None
    return user


def app_of(token: str) -> str | None:
    """The app a token claims (unverified: only to pick which app's secret checks it)."""
    if len(token) > MAX_TOKEN_LEN or not looks_like_token(token):
        return None
    try:
        return _unb64(token.split(".")[1]).decode()
    except (ValueError, UnicodeDecodeError):
        return None
