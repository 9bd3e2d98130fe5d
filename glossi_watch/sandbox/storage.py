"""The S3 side of the sandbox: presigned PUT URLs and the object store.

:class:`Presigner` issues and checks URLs in the shape of S3's SigV4 query
authentication; :class:`ObjectStore` streams request bodies to disk. Both
refuse with :class:`~glossi_watch.sandbox.errors.StorageRefusal` carrying the
status, code and message S3 would send.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import parse_qsl, quote

from glossi_watch.sandbox.errors import StorageRefusal

BUCKET = "glossi-sandbox-uploads"
SIGNED_CONTENT_TYPE = "model/gltf-binary"
MAX_OBJECT_BYTES = 5 * 1024**3
PIECE_BYTES = 1024 * 1024

ALGORITHM = "AWS4-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
QUERY_PARAMETERS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
QUERY_SIGNATURE = "X-Amz-Signature"


class ByteSource(Protocol):
    """Where a body is read from: ``read(n)`` returns up to n bytes, b"" at its end."""

    def read(self, size: int, /) -> bytes: ...


class Presigner:
    """Issues and checks presigned PUT URLs, signed with a per-instance secret.

    The signature is the hex HMAC-SHA256, under a random secret, of a canonical
    request: the method, the path exactly as issued (percent-encoded), the
    query parameters sorted and without the signature, and the signed headers
    ``content-type`` and ``host``. Only the shape and the refusals follow S3;
    the key derivation is not AWS's. ``X-Amz-Date`` and ``X-Amz-Expires`` are
    whole seconds (the TTL rounded up), so a URL lives between ``ttl - 1`` and
    ``ttl`` seconds, as with S3. A URL is expired before its signature is
    looked at, again as S3 does.
    """

    def __init__(
        self, *, ttl_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secrets.token_bytes(32)
        self._access_key_id = "AKIA" + secrets.token_hex(8).upper()
        self._expires_seconds = max(0, math.ceil(ttl_seconds))
        self._clock = clock

    def presign_put(
        self, path: str, *, host: str, ttl_seconds: float | None = None
    ) -> str:
        """Return the query string that authorises one PUT of ``path`` on ``host``.

        ``path`` must be percent-encoded already; ``host`` is ``name:port`` as
        the client will send it in its Host header. ``ttl_seconds`` replaces
        the presigner's lifetime for this URL.
        """
        expires = self._expires_seconds
        if ttl_seconds is not None:
            expires = max(0, math.ceil(ttl_seconds))
        stamp = time.strftime(DATE_FORMAT, time.gmtime(self._clock()))
        credential = f"{self._access_key_id}/{stamp[:8]}/us-east-1/s3/aws4_request"
        params = [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", credential),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", SIGNED_HEADERS),
        ]

        signature = self._sign("PUT", path, params, SIGNED_CONTENT_TYPE, host)
        return _encode_query([*params, (QUERY_SIGNATURE, signature)])

    def verify_put(
        self, *, path: str, query: str, content_type: str, host: str
    ) -> None:
        """Refuse the PUT unless its query authorises it now with these headers."""
        params = parse_qsl(query, keep_blank_values=True)
        given = dict(params)
        if not any(name in given for name in QUERY_PARAMETERS):
            raise StorageRefusal(403, "AccessDenied", "Access Denied")
        if not all(name in given for name in QUERY_PARAMETERS):
            raise _query_error(
                "Query-string authentication version 4 requires the "
                + ", ".join(QUERY_PARAMETERS)
                + " parameters."
            )
        if given["X-Amz-Algorithm"] != ALGORITHM:
            raise _query_error(f'X-Amz-Algorithm only supports "{ALGORITHM}".')

        expires_at = _expiry_time(given["X-Amz-Date"], given["X-Amz-Expires"])
        if self._clock() > expires_at:
            raise StorageRefusal(403, "AccessDenied", "Request has expired")

        unsigned = [(name, value) for name, value in params if name != QUERY_SIGNATURE]
        expected = self._sign("PUT", path, unsigned, content_type, host)
        if not hmac.compare_digest(expected.encode(), given[QUERY_SIGNATURE].encode()):
            raise StorageRefusal(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature "
                "you provided. Check your key and signing method.",
            )

    def _sign(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        content_type: str,
        host: str,
    ) -> str:
        canonical = "\n".join(
            [
                method,
                path,
                _encode_query(sorted(params)),
                f"content-type:{content_type.strip()}",
                f"host:{host.strip()}",
                "",
                SIGNED_HEADERS,
                "UNSIGNED-PAYLOAD",
            ]
        )
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()


def _encode_query(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
        for name, value in params
    )


def _query_error(message: str) -> StorageRefusal:
    return StorageRefusal(400, "AuthorizationQueryParametersError", message)


def _expiry_time(stamp: str, expires: str) -> float:
    try:
        issued = calendar.timegm(time.strptime(stamp, DATE_FORMAT))
        seconds = int(expires)
    except ValueError as exc:
        raise _query_error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\" "
            "and X-Amz-Expires a number of seconds."
        ) from exc
    return float(issued + seconds)


def parse_content_md5(header: str | None) -> bytes | None:
    """Return the digest a ``Content-MD5`` header promises, or None without one."""
    if header is None:
        return None
    try:
        digest = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid_digest() from exc
    if len(digest) != 16:
        raise _invalid_digest()
    return digest


def _invalid_digest() -> StorageRefusal:
    return StorageRefusal(
        400, "InvalidDigest", "The Content-MD5 you specified was not valid."
    )


@dataclass(frozen=True)
class StoredObject:
    """One object as stored: its key, size, digests and file."""

    key: str
    size: int
    md5_hex: str
    sha256_hex: str
    path: Path


class ObjectStore:
    """Objects kept as files under ``root / "objects"``, named by a hash of the key.

    A body is streamed in pieces of ``piece_bytes`` into a temporary file while
    its MD5 and SHA-256 are computed, and renamed into place only when it is
    whole and matches its ``Content-MD5``; a second PUT of a key replaces the
    object. Memory use stays at one piece whatever the size. Safe to use from
    several threads. The index of stored objects lives in memory only.
    """

    def __init__(self, root: Path, *, piece_bytes: int = PIECE_BYTES) -> None:
        self._folder = root / "objects"
        self._piece_bytes = piece_bytes
        self._objects: dict[str, StoredObject] = {}
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Create the objects folder; raises OSError when that is not possible."""
        self._folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> StoredObject | None:
        """Return the stored object for ``key``, or None before its first upload."""
        with self._lock:
            return self._objects.get(key)

    def put(
        self, key: str, body: ByteSource, length: int, *, expected_md5: bytes | None
    ) -> StoredObject:
        """Store exactly ``length`` bytes read from ``body`` as the object ``key``."""
        final_path = self._folder / hashlib.sha256(key.encode()).hexdigest()
        try:
            handle, temp_name = tempfile.mkstemp(dir=self._folder, prefix=".incoming-")
        except OSError as exc:
            raise _internal_error() from exc
        try:
            with os.fdopen(handle, "wb") as temp_file:
                md5, sha256_hex = self._copy(body, length, temp_file)
            if expected_md5 is not None and md5 != expected_md5:
                raise StorageRefusal(
                    400,
                    "BadDigest",
                    "The Content-MD5 you specified did not match what we received.",
                )

            stored = StoredObject(key, length, md5.hex(), sha256_hex, final_path)
            with self._lock:
                os.replace(temp_name, final_path)
                self._objects[key] = stored
        except OSError as exc:
            raise _internal_error() from exc
        finally:
            # Gone already after the rename; left over after any failure.
            Path(temp_name).unlink(missing_ok=True)
        return stored

    def _copy(
        self, body: ByteSource, length: int, target: BinaryIO
    ) -> tuple[bytes, str]:
        """Copy the body in pieces; return its MD5 digest and SHA-256 hex."""
        md5 = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        remaining = length
        while remaining > 0:
            piece = _read_piece(body, min(remaining, self._piece_bytes))
            md5.update(piece)
            sha256.update(piece)
            target.write(piece)
            remaining -= len(piece)
        return md5.digest(), sha256.hexdigest()


def _internal_error() -> StorageRefusal:
    return StorageRefusal(
        500,
        "InternalError",
        "We encountered an internal error. Please try again.",
        close_connection=True,
    )


def _read_piece(body: ByteSource, size: int) -> bytes:
    try:
        piece = body.read(size)
    except TimeoutError as exc:
        raise StorageRefusal(
            400,
            "RequestTimeout",
            "Your socket connection to the server was not read from or written to "
            "within the timeout period. Idle connections will be closed.",
            close_connection=True,
        ) from exc
    except OSError as exc:
        raise _incomplete_body() from exc
    if not piece:
        raise _incomplete_body()
    return piece


def _incomplete_body() -> StorageRefusal:
    return StorageRefusal(
        400,
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length "
        "HTTP header.",
        close_connection=True,
    )
