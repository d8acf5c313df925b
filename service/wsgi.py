"""gunicorn entry point: ``gunicorn -c python:service.gunicorn_conf service.wsgi:app``."""

from service.api.app import create_app
from service.settings import Settings

app = create_app(Settings.from_env())
