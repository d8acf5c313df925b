"""Build meinheld 1.0.2 against the greenlet installed beside it, and install it.

Why: meinheld's source bundles ``greenlet.h`` from greenlet 0.4 (2013) and reads a
greenlet's parent and state straight from struct fields. greenlet 2 and 3 no
longer have those fields, so the PyPI build crashes as soon as a request waits
cooperatively (``meinheld.server.trampoline``), which the service does on every
Redis call (``service/coop.py``). Compiled against the installed greenlet's own
header, the same reads go through greenlet's C API. That API returns the parent
as a new reference where meinheld expects a borrowed one, so it is released.

It also adds ``_current_client``, ``_park`` and ``_wake`` (see ``PARK_C``): a
request parks with nothing registered in the event loop and is resumed from the
loop's pending queue, so the requests sharing a pipelined Redis connection
(``service/pipeline.py``) wait and wake without a syscall each.

Liveness (see ``LIVE_C``): a wait on an fd the loop cannot register (at or past
picoev's ``max_fd``) raises ``OSError`` instead of parking its request for good;
a client connection whose fd is at or past ``_set_client_fd_limit(n)`` is answered
with the service's JSON 503 and closed instead of being accepted and starved
(counted by ``_refused_connections()``), so fds below ``max_fd`` stay free for the
worker's own Redis and PostgreSQL sockets; running out of fds (EMFILE) or an
aborted handshake no longer kills the worker.

Graceful drain (see ``DRAIN_C``): with ``_set_drain(timeout, idle_grace)``, SIGTERM (or
``_drain()``) no longer ends the loop within a second. The worker accepts what is queued
on its listeners and closes them, answers the next request on every connection with
``Connection: close``, closes connections idle for ``idle_grace`` seconds, and ends its
loop once no client connection is left (at the latest after ``timeout`` seconds).

The build is installed as version ``1.0.2+greenlet3.park.live.drain``; the service makes Redis
waits cooperative and pipelined only under that build and blocks the worker otherwise.

Usage: ``python deploy/build_meinheld.py`` with the virtualenv's Python.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.0.2"
LOCAL_VERSION = f"{VERSION}+greenlet3.park.live.drain"

# Park and wake a request's greenlet with no syscall (service/pipeline.py): _park()
# switches the running request to the loop with nothing registered; _wake(client)
# queues its resumption on the loop's pending queue, run before the next poll.
PARK_C = """\
static PyObject *meinheld_current_client(PyObject *self, PyObject *unused) {
  if (current_client == NULL) {
    Py_RETURN_NONE;
  }
  Py_INCREF(current_client);
  return current_client;
}

static PyObject *meinheld_park(PyObject *self, PyObject *unused) {
  PyObject *current, *parent;
  ClientObject *pyclient = (ClientObject *)current_client;
  if (pyclient == NULL || !CheckClientObject(current_client)) {
    PyErr_SetString(PyExc_IOError, "_park: no request is running");
    return NULL;
  }
  current = greenlet_getcurrent();
  Py_DECREF(current);
  if (pyclient->greenlet != current || pyclient->suspended) {
    PyErr_SetString(PyExc_IOError, "_park: not called by the running request");
    return NULL;
  }
  pyclient->suspended = 1;
  parent = greenlet_getparent(current);
  return greenlet_switch(parent, hub_switch_value, NULL);
}

static PyObject *meinheld_resume_parked(PyObject *self, PyObject *client) {
  ClientObject *pyclient = (ClientObject *)client;
  if (CheckClientObject(client) && pyclient->greenlet != NULL &&
      !greenlet_dead(pyclient->greenlet)) {
    resume_wsgi_handler(pyclient);
  }
  Py_RETURN_NONE;
}

static PyMethodDef resume_parked_def = {
    "_resume_parked", (PyCFunction)meinheld_resume_parked, METH_O, 0};
static PyObject *resume_parked_func = NULL;

static PyObject *meinheld_wake(PyObject *self, PyObject *client) {
  PyObject *args, *timer;
  if (!CheckClientObject(client)) {
    PyErr_SetString(PyExc_TypeError, "_wake: must be a client object");
    return NULL;
  }
  if (!((ClientObject *)client)->suspended) {
    PyErr_SetString(PyExc_IOError, "_wake: the client is not parked");
    return NULL;
  }
  if (resume_parked_func == NULL) {
    resume_parked_func = PyCFunction_New(&resume_parked_def, NULL);
    if (resume_parked_func == NULL) {
      return NULL;
    }
  }
  args = PyTuple_Pack(1, client);
  if (args == NULL) {
    return NULL;
  }
  timer = internal_schedule_call(0, resume_parked_func, args, NULL, NULL);
  Py_DECREF(args);
  if (timer == NULL) {
    return NULL;
  }
  Py_DECREF(timer);
  ((ClientObject *)client)->suspended = 0;
  Py_RETURN_NONE;
}

static PyMethodDef ServerMethods[] = {
"""

# Liveness: refuse clients past a limit with the service's JSON 503 (accept_callback),
# and never park a request on an fd the loop did not register (trampoline).
LIVE_C = """\
static int client_fd_limit = 1 << 30;
static long refused_connections = 0;

static void refuse_connection(int fd) {
  char body[192], head[448];
  char stamp[32];
  struct tm tm;
  time_t now = time(NULL);
  int body_len, head_len;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  body_len = snprintf(body, sizeof(body),
                      "{\\"error\\":\\"unavailable\\",\\"message\\":\\"Too many "
                      "connections to this worker, retry later\\",\\"metadata\\":"
                      "{\\"timestamp\\":\\"%s\\"}}", stamp);
  head_len = snprintf(head, sizeof(head),
                      "HTTP/1.1 503 Service Unavailable\\r\\nContent-Type: application/json"
                      "\\r\\nContent-Length: %d\\r\\nRetry-After: 1\\r\\nConnection: close"
                      "\\r\\n\\r\\n%s", body_len, body);
  if (write(fd, head, head_len) < 0) {
    /* best effort: the client is refused either way */
  }
  shutdown(fd, SHUT_WR);
  close(fd);
  refused_connections++;
}

static PyObject *meinheld_set_client_fd_limit(PyObject *self, PyObject *args) {
  int limit;
  if (!PyArg_ParseTuple(args, "i", &limit) || limit < 1) {
    PyErr_SetString(PyExc_ValueError, "_set_client_fd_limit: a positive int");
    return NULL;
  }
  client_fd_limit = limit;
  Py_RETURN_NONE;
}

static PyObject *meinheld_refused_connections(PyObject *self, PyObject *unused) {
  return PyLong_FromLong(refused_connections);
}

static void accept_callback(picoev_loop *loop, int fd, int events,
"""

# --- Graceful drain (issue 13; service/api/worker.py) --------------------------------
# Stock meinheld ends its loop about a second after SIGTERM: requests in flight (parked
# on Redis included) are dropped and keep-alive connections are cut mid-use. DRAIN_VARS
# goes before the code that uses them; DRAIN_C before the loop (run_loop).
DRAIN_VARS = """\
/* Graceful drain: see DRAIN_C. open_clients counts accepted client connections
   not yet closed (close_client is the only place that closes one). */
static int drain_timeout = 0; /* seconds; 0 = meinheld's own stop on SIGTERM */
static int drain_idle_grace = 2;
static volatile sig_atomic_t drain_requested = 0;
static int draining = 0;
static time_t drain_deadline = 0;
static long open_clients = 0;

static void clean_client(client_t *client) {
"""

DRAIN_C = """\
#include <poll.h>

/* Graceful drain, enabled by _set_drain(timeout, idle_grace), started by SIGTERM or
   _drain() at the next loop turn:
   1. every listener leaves the loop, what is queued on it is accepted, and it is
      closed: the last close of a listening socket resets the connections still in
      its queue, so the queue is emptied first (a connection arriving in the few
      microseconds between the last accept and close is still reset unless
      net.ipv4.tcp_migrate_req=1 hands it to another SO_REUSEPORT listener);
   2. every request read from now on is answered with "Connection: close";
   3. connections idle for idle_grace seconds are closed (keep-alive timeout);
   4. the loop ends once no client connection is left, or after timeout seconds. */
static void drain_listeners(void) {
  PyObject *iter, *item, *empty;
  struct pollfd pfd;
  int fd, rounds;

  iter = PyObject_GetIter(listen_socks);
  if (iter == NULL) {
    call_error_logger();
    return;
  }
  while ((item = PyIter_Next(iter))) {
    if (PyLong_Check(item)) {
      fd = (int)PyLong_AsLong(item);
      if (picoev_is_active(main_loop, fd) && !picoev_del(main_loop, fd)) {
        activecnt--;
      }
      for (rounds = 0; rounds < 4096; rounds++) { /* bounded: accept may keep failing */
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLIN)) {
          break;
        }
        accept_callback(main_loop, fd, PICOEV_READ, NULL);
      }
      close(fd);
    }
    Py_DECREF(item);
  }
  Py_DECREF(iter);
  empty = PyList_New(0); /* closed: nothing left for kill_server or close_all_sockets */
  if (empty != NULL) {
    Py_DECREF(listen_socks);
    listen_socks = empty;
  }
}

static void begin_drain(void) {
  int fd;
  draining = 1;
  drain_deadline = main_loop->now + drain_timeout;
  keep_alive_timeout = drain_idle_grace;
  for (fd = 0; fd < picoev.max_fd; fd++) { /* idle connections: a short grace */
    if (picoev.fds[fd].loop_id == main_loop->loop_id &&
        picoev.fds[fd].callback == read_callback) {
      picoev_set_timeout(main_loop, fd, drain_idle_grace);
    }
  }
  drain_listeners();
}

static PyObject *meinheld_set_drain(PyObject *self, PyObject *args) {
  int timeout, grace;
  if (!PyArg_ParseTuple(args, "ii", &timeout, &grace) || timeout < 1 || grace < 1) {
    PyErr_SetString(PyExc_ValueError, "_set_drain: positive timeout and idle grace");
    return NULL;
  }
  drain_timeout = timeout;
  drain_idle_grace = grace;
  Py_RETURN_NONE;
}

static PyObject *meinheld_drain(PyObject *self, PyObject *unused) {
  drain_requested = 1;
  Py_RETURN_NONE;
}

static PyObject *meinheld_run_loop(PyObject *self, PyObject *args,
"""

DRAIN_EDITS = (
    ("meinheld/server/server.c", "static void clean_client(client_t *client) {\n", DRAIN_VARS),
    (
        "meinheld/server/server.c",
        '    close(client->fd);\n    BDEBUG("close client:%p fd:%d", client, client->fd);\n',
        "    close(client->fd);\n    open_clients--;\n"
        '    BDEBUG("close client:%p fd:%d", client, client->fd);\n',
    ),
    (
        "meinheld/server/server.c",
        "  if (!is_keep_alive) {\n    client->keep_alive = 0;\n  }\n  /* setting_keepalive",
        "  if (!is_keep_alive || draining) {\n"
        "    client->keep_alive = 0;\n  }\n  /* setting_keepalive",
    ),
    (
        "meinheld/server/server.c",
        "        remote_addr = inet_ntoa(client_addr.sin_addr);\n",
        "        open_clients++;\n        remote_addr = inet_ntoa(client_addr.sin_addr);\n",
    ),
    (
        "meinheld/server/server.c",
        "static PyObject *meinheld_run_loop(PyObject *self, PyObject *args,\n",
        DRAIN_C,
    ),
    (
        "meinheld/server/server.c",
        "    picoev_loop_once(main_loop, 10);\n",
        "    picoev_loop_once(main_loop, drain_requested ? 0 : (draining ? 1 : 10));\n",
    ),
    (
        "meinheld/server/server.c",
        "      catch_signal = 0;\n      kill_server(0);\n    }\n",
        "      if (catch_signal == SIGTERM && drain_timeout > 0) {\n"
        "        drain_requested = 1;\n"
        "      } else {\n"
        "        kill_server(0);\n"
        "      }\n"
        "      catch_signal = 0;\n"
        "    }\n"
        "    if (unlikely(drain_requested) && !draining) {\n"
        "      begin_drain();\n"
        "    }\n"
        "    if (unlikely(draining) &&\n"
        "        (open_clients <= 0 || main_loop->now >= drain_deadline)) {\n"
        "      loop_done = 0;\n"
        "    }\n",
    ),
    (
        "meinheld/server/server.c",
        '    {"_resume_client", meinheld_resume_client, METH_VARARGS, "resume client"},\n',
        '    {"_resume_client", meinheld_resume_client, METH_VARARGS, "resume client"},\n'
        '    {"_set_drain", meinheld_set_drain, METH_VARARGS, 0},\n'
        '    {"_drain", meinheld_drain, METH_NOARGS, 0},\n',
    ),
)
# --- end of the graceful drain ---------------------------------------------------------

# (file, text in meinheld's source, replacement): each must match exactly once.
EDITS = (
    (
        "meinheld/server/greensupport.c",
        "  return (PyObject *)PyGreenlet_GET_PARENT((PyGreenlet *)g);\n",
        "  PyObject *parent = (PyObject *)PyGreenlet_GetParent((PyGreenlet *)g);\n"
        "  Py_XDECREF(parent); /* callers expect a borrowed reference */\n"
        "  return parent;\n",
    ),
    (
        "meinheld/server/greensupport.c",
        "int greenlet_dead(PyObject *g) {\n",
        "int greenlet_dead(PyObject *g) {\n  import_greenlet();\n",
    ),
    ("meinheld/server/server.c", "static PyMethodDef ServerMethods[] = {\n", PARK_C),
    (
        "meinheld/server/server.c",
        '    {"_resume_client", meinheld_resume_client, METH_VARARGS, "resume client"},\n',
        '    {"_resume_client", meinheld_resume_client, METH_VARARGS, "resume client"},\n'
        '    {"_current_client", meinheld_current_client, METH_NOARGS, 0},\n'
        '    {"_park", meinheld_park, METH_NOARGS, 0},\n'
        '    {"_wake", meinheld_wake, METH_O, 0},\n'
        '    {"_set_client_fd_limit", meinheld_set_client_fd_limit, METH_VARARGS, 0},\n'
        '    {"_refused_connections", meinheld_refused_connections, METH_NOARGS, 0},\n',
    ),
    ("meinheld/server/server.c", "static void accept_callback(picoev_loop *loop, int fd, int events,\n", LIVE_C),
    (
        "meinheld/server/server.c",
        '      if (client_fd != -1) {\n        DEBUG("accept fd %d", client_fd);\n',
        '      if (client_fd != -1) {\n        DEBUG("accept fd %d", client_fd);\n'
        "        if (client_fd >= client_fd_limit) {\n"
        "          refuse_connection(client_fd);\n"
        "          continue;\n"
        "        }\n",
    ),
    (
        "meinheld/server/server.c",
        "        if (errno != EAGAIN && errno != EWOULDBLOCK) {\n"
        "          PyErr_SetFromErrno(PyExc_IOError);\n"
        "          /* write_error_log(__FILE__, __LINE__); */\n"
        "          call_error_logger();\n"
        "          // die\n"
        "          kill_server(0);\n",
        "        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED &&\n"
        "            errno != EINTR && errno != EMFILE && errno != ENFILE &&\n"
        "            errno != ENOBUFS && errno != ENOMEM && errno != EPROTO) {\n"
        "          PyErr_SetFromErrno(PyExc_IOError);\n"
        "          /* write_error_log(__FILE__, __LINE__); */\n"
        "          call_error_logger();\n"
        "          // die\n"
        "          kill_server(0);\n",
    ),
    (
        "meinheld/server/server.c",
        '"i|OOi:trampoline", keywords,\n                                   &fd, &read, &write, &timeout)) {\n    return NULL;\n  }\n',
        '"i|OOi:trampoline", keywords,\n                                   &fd, &read, &write, &timeout)) {\n    return NULL;\n  }\n'
        "  if (main_loop == NULL || fd >= picoev.max_fd) {\n"
        '    PyErr_Format(PyExc_OSError, "trampoline: fd %d cannot join the event loop "\n'
        '                 "(max_fd %d)", fd, picoev.max_fd);\n'
        "    return NULL;\n"
        "  }\n",
    ),
    ("setup.py", "'greenlet>=0.4.5,<0.5'", "'greenlet>=3'"),
    ("setup.py", f'version="{VERSION}"', f'version="{LOCAL_VERSION}"'),
)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def patch_source(src: Path) -> None:
    import greenlet  # the one this build must match

    header = Path(greenlet.__file__).parent / "greenlet.h"
    shutil.copyfile(header, src / "meinheld/server/greenlet.h")
    for name, old, new in (*EDITS, *DRAIN_EDITS):
        path = src / name
        text = path.read_text()
        if text.count(old) != 1:
            sys.exit(f"build_meinheld: {name} is not the expected meinheld {VERSION} source")
        path.write_text(text.replace(old, new))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="meinheld-build-") as tmp:
        work = Path(tmp)
        sdist = ("--no-deps", "--no-binary", ":all:", f"meinheld=={VERSION}")
        pip("download", "-q", *sdist, "-d", str(work))
        with tarfile.open(work / f"meinheld-{VERSION}.tar.gz") as tar:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work, **safe)  # type: ignore[arg-type]
        src = work / f"meinheld-{VERSION}"
        patch_source(src)
        pip("install", "-q", "--no-deps", "--force-reinstall", str(src))


if __name__ == "__main__":
    main()
