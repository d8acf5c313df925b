"""The HTTP edge meinheld decides before the app sees a request.

meinheld reads a request whole (line, headers, body) before calling the app, so
the limits that protect a worker must be set on its C side: the body limit
(``COUNTER_MAX_BODY_BYTES``, checked against ``Content-Length`` before any of the
body is read, and as a chunked body arrives), the size and count of header
fields (431) and the read deadlines (``COUNTER_HEADER_TIMEOUT`` from accept, or
from a keep-alive request's first byte, for the request line and headers;
``COUNTER_BODY_TIMEOUT`` after them for the body; 408, or a silent close when
nothing arrived). ``deploy/build_meinheld.py`` adds ``_set_edge_limits`` and
renders meinheld's own answers in the service's JSON error shape.
"""

from __future__ import annotations

import logging

from service.settings import Settings

log = logging.getLogger("counter.edges")


def apply_to_meinheld(settings: Settings) -> None:
    """Set this worker's limits in meinheld; call before its loop starts."""
    from meinheld import server

    # meinheld refuses 0; the app then answers 413 for any body (resources.py).
    server.set_max_content_length(max(1, settings.max_body_bytes))
    if not hasattr(server, "_set_edge_limits"):
        log.warning(
            "meinheld is not the build from deploy/build_meinheld.py: no header limits "
            "or read deadlines, and its own errors are HTML"
        )
        return
    server._set_edge_limits(
        settings.max_header_bytes,
        settings.max_headers,
        settings.header_timeout,
        settings.body_timeout,
    )
