"""HTTP ceiling (NOT the product): Falcon under gunicorn + meinheld returning fixed JSON.

Same routes and a response of the same shape and size as the service, so the
only difference from the service is the work behind the response: this is the
most any Falcon app can do on this machine with this server stack.
"""

from __future__ import annotations

import falcon

BODY = b'{"data":{"namespace":"ns-0","value":1},"metadata":{"timestamp":"2026-01-01T00:00:00Z"}}'


class Fixed:
    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = BODY

    on_post = on_get


app = falcon.App()
app.add_route("/v1/misc/counter/{namespace}", Fixed())
app.add_route("/healthz", Fixed())
