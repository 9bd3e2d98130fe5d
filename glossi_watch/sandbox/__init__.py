"""The sandbox: a local stand-in for the Glossi Jobs API and its upload storage.

It runs two real HTTP servers on the loopback interface:

- the API (``app`` → ``api``): ``POST /api/v1/jobs``,
  ``POST /api/v1/jobs/{jobId}/confirm-uploads`` and ``GET /api/v1/jobs/{jobId}``
  with the shapes of the public Jobs page, plus open inspection routes
  ``GET /_sandbox/jobs`` and ``GET /_sandbox/requests``;
- the storage (``uploads``), on its own port, taking PUTs to presigned URLs
  the way S3 does, refusals and XML errors included (``storage``).

Job statuses advance with time after the confirm (``jobs``). Every request on
both servers passes one dispatch point (``server``), where a fault hook can
later make the sandbox misbehave on purpose. The sandbox never prints or
records the API key, a header value or a signed query string.

::

    with Sandbox(api_key="k", data_dir=tmp_path) as sandbox:
        client = httpx.Client(base_url=sandbox.api_base_url)
"""

from glossi_watch.sandbox.app import Sandbox

__all__ = ["Sandbox"]
