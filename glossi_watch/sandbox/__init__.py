"""The sandbox: a local stand-in for the Glossi Jobs API and its upload storage.

It runs two real HTTP/1.1 servers on the loopback interface. The API answers
``POST /api/v1/jobs``, ``POST /api/v1/jobs/{jobId}/confirm-uploads`` and
``GET /api/v1/jobs/{jobId}`` with the shapes of the public Jobs page, plus the
open inspection routes ``GET /_sandbox/jobs`` and ``GET /_sandbox/requests``
and the fault routes under ``/_sandbox/faults``. The storage, on its own port,
takes PUTs to presigned URLs the way S3 does, refusals and XML errors
included. Faults make either misbehave on purpose: error statuses, latency,
resets, stalls, slow uploads, short-lived URLs, failing or hanging jobs, HTML
pages. The sandbox never prints or records the API key, a header value or a
signed query string.

The modules, one concept each:

- ``app``: :class:`Sandbox`, which starts and stops both servers;
- ``server``: the dispatch point every request passes (recording, routing,
  the fault hook, refusals), shared by both servers; ``routes`` and
  ``request_log``: route names and matching, and the record of requests;
- ``api``, ``job_requests`` and ``jobs``: the Jobs API routes, the create-job
  body, and jobs with their progress;
- ``uploads`` and ``storage``: the PUT route, presigned URLs, the object store;
- ``fault_specs``, ``faults`` and ``fault_effects``: what a fault is, the board
  that decides which applies, and what each does to a request;
- ``errors``: the sandbox's branch of the exception tree;
- ``command``: the ``sandbox`` command line.

::

    with Sandbox(api_key="k", data_dir=tmp_path) as sandbox:
        client = httpx.Client(base_url=sandbox.api_base_url)
"""

from glossi_watch.sandbox.app import Sandbox

__all__ = ["Sandbox"]
