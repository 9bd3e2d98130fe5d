"""Sealing upload URLs so the state store never holds a usable one.

A presigned URL is a bearer credential for one object for an hour. The daemon
must keep it across a crash to resume an upload into the same job, yet the
state store must never contain one. So the store keeps it sealed with Fernet
(AES with an HMAC) under a key derived from the API key, which itself is never
written anywhere. Whoever can read the database alone learns nothing usable;
after the API key changes, old seals no longer open and the daemon treats
those URLs as expired (a new job is created for the files concerned).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from glossi_watch.config import Secret

_CONTEXT = b"glossi-watch: sealed upload URLs, v1"


def _fernet(api_key: Secret) -> Fernet:
    digest = hmac.new(api_key.reveal().encode(), _CONTEXT, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(url: str, api_key: Secret) -> str:
    """Encrypt and authenticate ``url`` for storage."""
    return _fernet(api_key).encrypt(url.encode()).decode("ascii")


def unseal(token: str, api_key: Secret) -> str | None:
    """The URL inside ``token``, or None when it cannot be opened with this key."""
    try:
        return _fernet(api_key).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        return None
