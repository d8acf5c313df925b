"""Build meinheld 1.0.2 against the greenlet installed beside it, and install it.

Why: meinheld's source bundles ``greenlet.h`` from greenlet 0.4 (2013) and reads a
greenlet's parent and state straight from struct fields. greenlet 2 and 3 no
longer have those fields, so the PyPI build crashes as soon as a request waits
cooperatively (``meinheld.server.trampoline``), which the service does on every
Redis call (``service/fastpath/coop.py``). Compiled against the installed greenlet's own
header, the same reads go through greenlet's C API. That API returns the parent
as a new reference where meinheld expects a borrowed one, so it is released.

It also adds ``_current_client``, ``_park`` and ``_wake`` (see ``PARK_C``): a
request parks with nothing registered in the event loop and is resumed from the
loop's pending queue, so the requests sharing a pipelined Redis connection
(``service/fastpath/pipeline.py``) wait and wake without a syscall each.

Liveness (see ``LIVE_C``): a wait on an fd the loop cannot register (at or past
picoev's ``max_fd``) raises ``OSError`` instead of parking its request for good;
a client connection whose fd is at or past ``_set_client_fd_limit(n)`` is answered
with the service's JSON 503 and closed instead of being accepted and starved
(counted by ``_refused_connections()``), so fds below ``max_fd`` stay free for the
worker's own Redis and PostgreSQL sockets; running out of fds (EMFILE) or an
aborted handshake no longer kills the worker.

The build is installed as version ``1.0.2+greenlet3.park.live.perf``; the service makes Redis
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
LOCAL_VERSION = f"{VERSION}+greenlet3.park.live.perf"

# Park and wake a request's greenlet with no syscall (service/fastpath/pipeline.py): _park()
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
# PERF: every request runs in a new greenlet, and CPython 3.11+ gives each greenlet a
# 16 KB frame stack from its arena allocator: an mmap when the request starts and a
# munmap when it ends. _cache_frame_stacks(n) keeps up to n freed stacks of that size
# for reuse (other sizes, such as obmalloc's arenas, go straight through).
FRAME_STACK_C = """\
#define FRAME_STACK_BYTES (16 * 1024)
static PyObjectArenaAllocator base_arena;
static void **stack_cache = NULL;
static int stack_cache_len = 0, stack_cache_cap = 0;

static void *cached_arena_alloc(void *ctx, size_t size) {
  if (size == FRAME_STACK_BYTES && stack_cache_len > 0) {
    return stack_cache[--stack_cache_len];
  }
  return base_arena.alloc(base_arena.ctx, size);
}

static void cached_arena_free(void *ctx, void *ptr, size_t size) {
  if (size == FRAME_STACK_BYTES && stack_cache_len < stack_cache_cap) {
    stack_cache[stack_cache_len++] = ptr;
    return;
  }
  base_arena.free(base_arena.ctx, ptr, size);
}

static PyObject *meinheld_cache_frame_stacks(PyObject *self, PyObject *args) {
  int n;
  PyObjectArenaAllocator cached = {NULL, cached_arena_alloc, cached_arena_free};
  if (!PyArg_ParseTuple(args, "i", &n) || n < 1 || stack_cache != NULL) {
    PyErr_SetString(PyExc_ValueError, "_cache_frame_stacks: once, with a positive count");
    return NULL;
  }
  stack_cache = PyMem_RawMalloc(sizeof(void *) * n);
  if (stack_cache == NULL) {
    return PyErr_NoMemory();
  }
  stack_cache_cap = n;
  PyObject_GetArenaAllocator(&base_arena);
  PyObject_SetArenaAllocator(&cached);
  Py_RETURN_NONE;
}

"""
ACCEPT_CALLBACK = "static void accept_callback(picoev_loop *loop, int fd, int events,\n"
TRAMPOLINE_ARGS = (
    '"i|OOi:trampoline", keywords,\n'
    "                                   &fd, &read, &write, &timeout)) {\n"
    "    return NULL;\n"
    "  }\n"
)

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
        '    {"_refused_connections", meinheld_refused_connections, METH_NOARGS, 0},\n'
        '    {"_cache_frame_stacks", meinheld_cache_frame_stacks, METH_VARARGS, 0},\n',
    ),
    ("meinheld/server/server.c", ACCEPT_CALLBACK, FRAME_STACK_C + LIVE_C),
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
        TRAMPOLINE_ARGS,
        TRAMPOLINE_ARGS + "  if (main_loop == NULL || fd >= picoev.max_fd) {\n"
        '    PyErr_Format(PyExc_OSError, "trampoline: fd %d cannot join the event loop "\n'
        '                 "(max_fd %d)", fd, picoev.max_fd);\n'
        "    return NULL;\n"
        "  }\n",
    ),
    # PERF: no EPOLLEXCLUSIVE on re-registration. picoev defers deletes and re-arms a
    # socket with EPOLL_CTL_MOD, which the kernel refuses for a socket added with
    # EPOLLEXCLUSIVE; it then tried EPOLL_CTL_ADD, which fails too (EEXIST): two failing
    # epoll_ctl calls per request, and write interest never armed. Without the flag the
    # MOD succeeds.
    (
        "meinheld/server/picoev_epoll.c",
        "      assert(errno == ENOENT);\n      ev.events |= EPOLLEXCLUSIVE;\n",
        "      assert(errno == ENOENT);\n",
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
    for name, old, new in EDITS:
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
