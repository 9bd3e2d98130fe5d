"""The sandbox: a local stand-in for the Glossi Jobs API and its upload storage.

It runs two real HTTP/1.1 servers on the loopback interface. The API answers
``POST /api/v1/jobs``, ``POST /api/v1/jobs/{jobId}/confirm-uploads`` and
``GET /api/v1/jobs/{jobId}`` with the shapes of the public Jobs page, plus the
open inspection routes ``GET /_sandbox/jobs`` and ``GET /_sandbox/requests``.
The storage, on its own port, takes PUTs to presigned URLs the way S3 does,
refusals and XML errors included. The sandbox never prints or records the API
key, a header value or a signed query string.

The modules, one concept each:

- ``app``: :class:`Sandbox`, which starts and stops both servers;
- ``server``: the dispatch point every request passes (recording, routing,
  the fault hook, refusals), shared by both servers;
- ``api`` and ``jobs``: the Jobs API routes, and jobs with their progress;
- ``uploads`` and ``storage``: the PUT route, presigned URLs, the object store;
- ``errors``: the sandbox's branch of the exception tree;
- ``command``: the ``sandbox`` command line.

::

    with Sandbox(api_key="k", data_dir=tmp_path) as sandbox:
        client = httpx.Client(base_url=sandbox.api_base_url)
"""

from glossi_watch.sandbox.app import Sandbox

__all__ = ["Sandbox"]
