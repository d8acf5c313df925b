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

Strict edges (see ``EDGE_*``): every answer meinheld gives by itself (parser errors,
timeouts, oversized requests) is the service's JSON error shape; an unknown method on
a well-formed request line reaches the app (which answers 405 with ``Allow``) instead
of a 400; the request line and headers must arrive within ``header_timeout`` of the
connection (or of a keep-alive request's first byte) and the body within
``body_timeout`` after them, never pushed back by a slow trickle; header bytes and
count are capped (431). ``_set_edge_limits`` sets them (``service/api/edges.py``).

Graceful drain (see ``DRAIN_C``): with ``_set_drain(timeout, idle_grace)``, SIGTERM (or
``_drain()``) no longer ends the loop within a second. The worker accepts what is queued
on its listeners and closes them, answers the next request on every connection with
``Connection: close``, closes connections idle for ``idle_grace`` seconds, and ends its
loop once no client connection is left (at the latest after ``timeout`` seconds).

The build is installed as version ``1.0.2+greenlet3.park.live.perf.edges.drain``; the
service makes Redis waits cooperative and pipelined only under that build and blocks the
worker otherwise.

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
LOCAL_VERSION = f"{VERSION}+greenlet3.park.live.perf.edges.drain"

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

# Edges, in response.c: meinheld's own answers (parser errors, timeouts, oversized
# requests) in the service's JSON error shape, like refuse_connection's 503.
EDGE_PAGE_C = r"""static const char *edge_reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
  }
}

static const char *edge_message(int status) {
  switch (status) {
    case 400: return "Malformed request: not valid HTTP/1.1";
    case 405: return "Method not allowed on this resource";
    case 408: return "Request not received in time";
    case 411: return "Length required: send Content-Length with a request body";
    case 413: return "Request body too large";
    case 414: return "Request target too long";
    case 417: return "Expectation not supported (only 100-continue)";
    case 431: return "Request header fields too large or too many";
    case 503: return "Service unavailable, retry later";
    default: return "Internal server error";
  }
}

static const char *edge_code(int status) {
  if (status == 405) return "method_not_allowed";
  if (status == 413) return "payload_too_large";
  if (status == 503) return "unavailable";
  if (status >= 500) return "internal_error";
  return "bad_request";
}

static void edge_error_page(client_t *client) {
  char body[256], page[512], stamp[32];
  struct tm tm;
  time_t now = time(NULL);
  int status = client->status_code, body_len, page_len;
  if (status < 400 || status > 599) {
    status = 500;
  }
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  body_len = snprintf(body, sizeof(body),
                      "{\"error\":\"%s\",\"message\":\"%s\",\"metadata\":"
                      "{\"timestamp\":\"%s\"}}",
                      edge_code(status), edge_message(status), stamp);
  page_len = snprintf(page, sizeof(page),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n%sConnection: close\r\n\r\n%s",
                      status, edge_reason(status), body_len,
                      status == 503 ? "Retry-After: 1\r\n" : "", body);
  blocking_write(client, page, page_len);
}

void send_error_page(client_t *client) {
"""

# Edges, in server.c: limits and read deadlines (``_set_edge_limits``), unknown methods
# handed to the app, parser failures mapped to their status.
EDGE_SERVER_C = r"""uint32_t edge_max_header_bytes = 80 * 1024; /* request line + headers */
int edge_max_header_fields = 128;
static int edge_header_timeout = 30; /* seconds for the request line and headers */
static int edge_body_timeout = 30;   /* seconds for the body, after the headers */

static PyObject *meinheld_set_edge_limits(PyObject *self, PyObject *args) {
  int header_bytes, header_fields, header_timeout, body_timeout;
  if (!PyArg_ParseTuple(args, "iiii", &header_bytes, &header_fields,
                        &header_timeout, &body_timeout)) {
    return NULL;
  }
  if (header_bytes < 256 || header_fields < 1 || header_timeout < 1 ||
      body_timeout < 1) {
    PyErr_SetString(PyExc_ValueError, "_set_edge_limits: a limit is out of range");
    return NULL;
  }
  edge_max_header_bytes = (uint32_t)header_bytes;
  edge_max_header_fields = header_fields;
  edge_header_timeout = header_timeout;
  edge_body_timeout = body_timeout;
  Py_RETURN_NONE;
}

static int edge_timeout(client_t *client) {
  return client->edge_phase == 2 ? edge_body_timeout : edge_header_timeout;
}

/* A request arriving in pieces: its deadline is set once per phase (headers from
   accept or from a keep-alive request's first byte, then the body from the end of
   the headers), never pushed back by later reads, so a trickle cannot hold the
   connection. */
static void edge_arm_deadline(client_t *client) {
  request *req = client->current_req;
  uint8_t phase = 1;
  if (req != NULL && req->environ != NULL &&
      PyDict_GetItem(req->environ, client_key) != NULL) {
    phase = 2; /* the headers are complete: the body is being read */
  }
  if (phase > client->edge_phase) {
    client->edge_phase = phase;
    if (picoev_is_active(main_loop, client->fd)) {
      picoev_set_timeout(main_loop, client->fd, edge_timeout(client));
    }
  }
}

static int edge_status(client_t *client, request *req) {
  if (req != NULL && req->bad_request_code > 0) {
    return req->bad_request_code;
  }
  if (HTTP_PARSER_ERRNO(client->http_parser) == HPE_HEADER_OVERFLOW) {
    return 431;
  }
  return 400;
}

static int edge_is_tchar(unsigned char c) {
  return c > 32 && c < 127 && strchr("\"(),/:;<=>?@[\\]{}", c) == NULL;
}

/* The parser knows a fixed list of methods and fails on any other. An unknown
   token on a well-formed request line (QUERY /x HTTP/1.1) is parsed as GET and
   REQUEST_METHOD set to the token, so the app answers 405 with the resource's
   Allow. Only at the start of a connection's request (pipelined ones: 400). */
static size_t edge_execute_parse(client_t *client, char *buf, ssize_t r) {
  ssize_t i = 0, n, nl, end;
  int m;
  char *copy;
  size_t len, nread;
  if (client->current_req != NULL || client->edge_method != NULL) {
    return execute_parse(client, buf, r);
  }
  while (i < r && (buf[i] == '\r' || buf[i] == '\n')) {
    i++;
  }
  for (n = i; n < r && n - i <= 32 && edge_is_tchar((unsigned char)buf[n]); n++) {
  }
  if (n == i || n >= r || buf[n] != ' ') {
    return execute_parse(client, buf, r);
  }
  for (m = 0; m <= HTTP_PURGE; m++) {
    const char *known = http_method_str((enum http_method)m);
    if ((ssize_t)strlen(known) == n - i && memcmp(known, buf + i, n - i) == 0) {
      return execute_parse(client, buf, r);
    }
  }
  for (nl = n; nl < r && buf[nl] != '\n'; nl++) {
  }
  end = (nl < r && buf[nl - 1] == '\r') ? nl - 1 : nl;
  if (nl >= r || end - n < 11 || memcmp(buf + end - 9, " HTTP/1.", 8) != 0 ||
      buf[end - 1] < '0' || buf[end - 1] > '9') {
    return execute_parse(client, buf, r);
  }
  len = (size_t)(r - n) + 3;
  copy = PyMem_Malloc(len);
  if (copy == NULL) {
    return execute_parse(client, buf, r);
  }
  client->edge_method = PyUnicode_DecodeLatin1(buf + i, n - i, NULL);
  if (client->edge_method == NULL) {
    PyErr_Clear();
    PyMem_Free(copy);
    return execute_parse(client, buf, r);
  }
  memcpy(copy, "GET", 3);
  memcpy(copy + 3, buf + n, r - n);
  nread = execute_parse(client, copy, len);
  PyMem_Free(copy);
  return nread == len ? (size_t)r : 0;
}

static int parse_http_request(int fd, client_t *client, char *buf, ssize_t r) {
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

# Strict edges (EDGE_PAGE_C, EDGE_SERVER_C), applied after EDITS.
EDGE_EDITS = (
    ("meinheld/server/response.c", "void send_error_page(client_t *client) {\n", EDGE_PAGE_C),
    (
        "meinheld/server/response.c",
        "  switch (client->status_code) {\n    case 400:\n",
        "  edge_error_page(client);\n"
        "  client->keep_alive = 0;\n"
        "  client->header_done = 1;\n"
        "  client->response_closed = 1;\n"
        "  return;\n"
        "  switch (client->status_code) {\n    case 400:\n",
    ),
    (
        "meinheld/server/client.h",
        "  uint8_t use_cork;            // use TCP_CORK\n",
        "  uint8_t use_cork;            // use TCP_CORK\n"
        "  PyObject *edge_method;       // edges: an unknown method, parsed as GET\n"
        "  uint8_t edge_phase;          // edges: 0 idle, 1 headers, 2 body\n",
    ),
    (
        "meinheld/server/request.h",
        "#define LIMIT_REQUEST_FIELDS 128\n#define LIMIT_REQUEST_FIELD_SIZE 1024 * 8\n",
        "extern int edge_max_header_fields;\n"
        "extern uint32_t edge_max_header_bytes;\n"
        "#define LIMIT_REQUEST_FIELDS edge_max_header_fields\n"
        "#define LIMIT_REQUEST_FIELD_SIZE edge_max_header_bytes\n",
    ),
    (
        "meinheld/server/http_parser.h",
        "#define HTTP_MAX_HEADER_SIZE (80 * 1024)\n",
        "extern uint32_t edge_max_header_bytes; /* edges: _set_edge_limits */\n"
        "#define HTTP_MAX_HEADER_SIZE edge_max_header_bytes\n",
    ),
    (
        "meinheld/server/http_request_parser.c",
        "    if (LIMIT_REQUEST_FIELDS <= req->num_headers) {\n      req->bad_request_code = 400;\n",
        "    /* edges: num_headers excludes the field pending in req: count it */\n"
        "    if (LIMIT_REQUEST_FIELDS <= req->num_headers + 1) {\n"
        "      req->bad_request_code = 431;\n",
    ),
    (
        "meinheld/server/http_request_parser.c",
        "    case LIMIT_OVER:\n      req->bad_request_code = 400;\n",
        "    case LIMIT_OVER:\n      req->bad_request_code = 414;\n",
    ),
    (
        "meinheld/server/http_request_parser.c",
        "    default:\n      obj = http_method_get;\n      break;\n  }\n\n"
        "  ret = PyDict_SetItem(env, request_method_key, obj);\n",
        "    default:\n      obj = NULL; /* edges: never serve another method as GET */\n"
        "      break;\n  }\n\n"
        "  if (client->edge_method != NULL) {\n"
        "    obj = client->edge_method;\n"
        "  }\n"
        "  if (obj == NULL) {\n"
        "    PyObject *name = PyUnicode_FromString(http_method_str(p->method));\n"
        "    if (name == NULL) {\n"
        "      return -1;\n"
        "    }\n"
        "    ret = PyDict_SetItem(env, request_method_key, name);\n"
        "    Py_DECREF(name);\n"
        "  } else {\n"
        "    ret = PyDict_SetItem(env, request_method_key, obj);\n"
        "  }\n",
    ),
    (
        "meinheld/server/server.c",
        "static int parse_http_request(int fd, client_t *client, char *buf, ssize_t r) {\n",
        EDGE_SERVER_C,
    ),
    (
        "meinheld/server/server.c",
        "  nread = execute_parse(client, buf, r);\n",
        "  nread = edge_execute_parse(client, buf, r);\n",
    ),
    (
        "meinheld/server/server.c",
        "    if (parse_new_protocol(req, buf, r, nread) == -1) {\n"
        "      return set_read_error(client, req->bad_request_code);\n    }\n",
        "    if (parse_new_protocol(req, buf, r, nread) == -1) {\n"
        "      /* edges: not a switch this server makes: serve it as a plain request */\n"
        "      PyErr_Clear();\n"
        "      client->upgrade = 0;\n"
        "      client->keep_alive = 0;\n    }\n",
    ),
    (
        "meinheld/server/server.c",
        "    return set_read_error(client, 400);\n  } else if (nread != r",
        "    return set_read_error(client, edge_status(client, NULL));\n  } else if (nread != r",
    ),
    (
        "meinheld/server/server.c",
        '    DEBUG("fd %d bad_request code %d", fd, req->bad_request_code);\n'
        "    return set_read_error(client, req->bad_request_code);\n",
        '    DEBUG("fd %d bad_request code %d", fd, req->bad_request_code);\n'
        "    return set_read_error(client, edge_status(client, req));\n",
    ),
    (
        "meinheld/server/server.c",
        "  if (!client->keep_alive) {\n    picoev_set_timeout(loop, fd, READ_TIMEOUT_SECS);\n  }\n",
        "  /* edges: no timeout pushed back per read (see edge_arm_deadline) */\n",
    ),
    (
        "meinheld/server/server.c",
        "    case 0:\n      return set_read_error(client, 503);\n",
        "    case 0: /* edges: the client ended an incomplete request */\n"
        "      return set_read_error(client, 400);\n",
    ),
    (
        "meinheld/server/server.c",
        "      return parse_http_request(fd, client, buf, r);\n",
        "      r = parse_http_request(fd, client, buf, r);\n"
        "      if (r == 0) {\n"
        "        edge_arm_deadline(client);\n"
        "      }\n"
        "      return (int)r;\n",
    ),
    (
        "meinheld/server/server.c",
        "        init_parser(client, server_name, server_port);\n\n"
        "        finish = read_request(loop, fd, client, 1);\n",
        "        init_parser(client, server_name, server_port);\n"
        "        client->edge_phase = 1; /* edges: the headers' deadline runs from accept */\n\n"
        "        finish = read_request(loop, fd, client, 1);\n",
    ),
    (
        "meinheld/server/server.c",
        "          ret = picoev_add(loop, client_fd, PICOEV_READ, keep_alive_timeout,\n",
        "          ret = picoev_add(loop, client_fd, PICOEV_READ, edge_timeout(client),\n",
    ),
    (
        "meinheld/server/server.c",
        "static void dealloc_client(client_t *client) {\n",
        "static void dealloc_client(client_t *client) {\n  Py_CLEAR(client->edge_method);\n",
    ),
    (
        "meinheld/server/server.c",
        '    {"set_max_content_length", meinheld_set_max_content_length, METH_VARARGS,\n',
        '    {"_set_edge_limits", meinheld_set_edge_limits, METH_VARARGS, 0},\n'
        '    {"set_max_content_length", meinheld_set_max_content_length, METH_VARARGS,\n',
    ),
)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def patch_source(src: Path) -> None:
    import greenlet  # the one this build must match

    header = Path(greenlet.__file__).parent / "greenlet.h"
    shutil.copyfile(header, src / "meinheld/server/greenlet.h")
    for name, old, new in (*EDITS, *EDGE_EDITS, *DRAIN_EDITS):
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
