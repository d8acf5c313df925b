"""gunicorn entry point: ``gunicorn -c python:service.gunicorn_conf service.wsgi:app``.

The composition root of a worker process. Nothing is preloaded, so each worker
imports this after fork, in the thread that then runs its event loop: under the
meinheld worker it finds the loop's hooks here and passes them in, so requests
waiting on Redis or PostgreSQL yield to the others.
"""

import gc

from service.api.app import create_app
from service.api.edges import apply_to_meinheld
from service.fastpath.coop import meinheld_hooks
from service.logs import setup_logging
from service.settings import Settings

settings = Settings.from_env()
setup_logging(settings.log_level)
if settings.worker_class == "meinheld":
    apply_to_meinheld(settings)  # body, header and time limits, enforced before the app
app = create_app(settings, hooks=meinheld_hooks() if settings.worker_class == "meinheld" else None)
# PERF: what the worker built so far lives as long as the worker. Frozen, the cyclic
# collector stops scanning it: a full collection under load paused a worker for
# 17-99 ms (gc.callbacks, `make bench-quick`), after freezing for at most ~3 ms.
gc.freeze()
