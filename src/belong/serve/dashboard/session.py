"""Dashboard sessions: an admin key, once, buys a signed cookie; every action carries a CSRF token.

The cookie is ``<payload>.<signature>``: the payload (base64url JSON) holds the expiry, a CSRF token and a
fingerprint of the admin key that logged in; the signature is an HMAC-SHA256 over it with the server's secret
(``BELONG_DASHBOARD_SECRET``, see :mod:`belong.serve.settings`; else a random secret per process: sessions then
end with the process). Nothing in the cookie is the key itself. A session is refused when the signature is wrong,
it has expired, or its key is no longer an admin key (revoking a key ends its sessions). The cookie is
``HttpOnly``, ``SameSite=Strict``, path ``/dashboard`` and ``Secure`` when the request came over TLS (the URL
scheme, which uvicorn takes from ``X-Forwarded-Proto`` when ``BELONG_PROXY_HEADERS`` trusts the proxy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from fastapi import Request

COOKIE = "belong_dashboard"
TTL_S = 8 * 3600
LOGIN_FORM_TTL_S = 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    expires: int


class Sessions:
    """Signs and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: bytes | None = None, ttl_s: int = TTL_S) -> None:
        self.secret = secret or secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def fingerprint(self, key: str) -> str:
        return _b64(hmac.new(self.secret, b"key\x00" + key.encode(), hashlib.sha256).digest()[:16])

    def issue(self, key: str, now: float | None = None) -> tuple[str, Session]:
        """A new session cookie value for admin key ``key``."""
        expires = int((now or time.time()) + self.ttl_s)
        session = Session(secrets.token_urlsafe(24), expires)
        payload = _b64(orjson.dumps({"exp": expires, "csrf": session.csrf, "key": self.fingerprint(key)}))
        return f"{payload}.{self._sign(payload)}", session

    def read(self, cookie: str | None, admin_keys: frozenset[str], now: float | None = None) -> Session | None:
        """The session of a cookie value, or None when it is missing, forged, expired or its key was revoked."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            expires, csrf, key = int(data["exp"]), str(data["csrf"]), str(data["key"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (now or time.time()):
            return None
        found = False
        for k in admin_keys:  # no early exit
            found |= hmac.compare_digest(key, self.fingerprint(k))
        return Session(csrf, expires) if found else None

    # the login form has no session yet: its token is a signed time, checked for age
    def login_token(self, now: float | None = None) -> str:
        stamp = str(int(now or time.time()))
        return f"{stamp}.{self._sign('login' + stamp)}"

    def check_login_token(self, token: str, now: float | None = None) -> bool:
        stamp, _, sig = token.partition(".")
        if not stamp.isdigit() or not hmac.compare_digest(sig, self._sign("login" + stamp)):
            return False
        return 0 <= (now or time.time()) - int(stamp) <= LOGIN_FORM_TTL_S


def is_tls(request: Request, trust_proxy: bool) -> bool:
    """Whether the browser reached us over TLS: the URL scheme, or a trusted proxy's ``X-Forwarded-Proto``."""
    if request.url.scheme == "https":
        return True
    return trust_proxy and request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() == "https"
