"""The storage server of the sandbox: PUTs to presigned URLs, answered as S3 does.

The checks run in S3's order: the method and bucket, the body framing
(``Transfer-Encoding``, ``Content-Length``, the 5 GiB limit), the query
authentication (expiry, then signature over ``Content-Type`` and ``Host``),
the ``Content-MD5`` format. Only then is ``100 Continue`` sent and the body
streamed to the object store, which checks its length and digest.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from glossi_watch.sandbox.errors import StorageRefusal
from glossi_watch.sandbox.routes import UNMATCHED, Route, RouteMatch, Target
from glossi_watch.sandbox.server import SandboxHandler
from glossi_watch.sandbox.storage import (
    BUCKET,
    MAX_OBJECT_BYTES,
    parse_content_md5,
)

UPLOAD = "upload"
ROUTES = (Route(UPLOAD, "PUT", re.compile(f"/{BUCKET}/(?P<key>.+)")),)


class UploadHandler(SandboxHandler):
    """Answers PUTs of objects to presigned URLs, refusing with S3's XML errors."""

    role = "storage"
    routes = ROUTES
    software = "AmazonS3"
    drain_limit = MAX_OBJECT_BYTES

    def answer(self, found: RouteMatch, target: Target) -> None:
        if found.name == UNMATCHED:
            raise _unmatched(found)
        length = self._declared_length()

        state = self.server.state
        state.presigner.verify_put(
            path=target.path,
            query=target.query,
            content_type=self.headers.get("Content-Type", ""),
            host=self.headers.get("Host", ""),
        )
        expected_md5 = parse_content_md5(self.headers.get("Content-MD5"))

        self.send_continue()
        key = unquote(found.params["key"])
        try:
            stored = state.store.put(key, self.rfile, length, expected_md5=expected_md5)
        finally:
            # The store either read the whole body or raised a refusal that
            # closes the connection; nothing is left to drain either way.
            self.body_remaining = 0
        self.send_body(200, headers={"ETag": f'"{stored.md5_hex}"'})

    def _declared_length(self) -> int:
        """Return the Content-Length, refusing bodies S3 would not accept."""
        if "Transfer-Encoding" in self.headers:
            raise StorageRefusal(
                501,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
                close_connection=True,
            )
        if "Content-Length" not in self.headers:
            raise StorageRefusal(
                411,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
                close_connection=True,
            )

        length = self.body_remaining
        if length is None:
            raise StorageRefusal(
                400,
                "InvalidArgument",
                "The Content-Length header is not a number of bytes.",
                close_connection=True,
            )
        if length > MAX_OBJECT_BYTES:
            raise StorageRefusal(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                close_connection=True,
            )
        return length


def _unmatched(found: RouteMatch) -> StorageRefusal:
    if found.allowed_methods:
        return StorageRefusal(
            405,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        )
    return StorageRefusal(404, "NoSuchBucket", "The specified bucket does not exist")
