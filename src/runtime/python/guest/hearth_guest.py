"""The Python guest: a generic runtime ("stem cell") that starts before it knows its function, is bound
to one function's code by a Bind frame, then serves invocations over fd 3. Started by bootstrap.py.

Runs inside the sandbox on every cold start, so it uses only the standard library; the frame codec
mirrors src/runtime/ipc/protocol.ts. Sync handlers are served by a blocking loop, one at a time;
coroutine handlers by an asyncio loop, concurrently.
"""

import base64
import collections
import contextvars
import gc
import importlib
import json
import os
import site
import socket
import stat
import struct
import sys
import time
import types
from urllib.parse import parse_qsl

# asyncio, inspect, threading and traceback are imported where they are needed (a coroutine handler, a
# decorated one, an error): asyncio alone was ~30 ms of a stem cell's ~50 ms of CPU at boot, which a burst
# of cold starts pays once per cell (issue 11). `import x` inside a function is a dict look-up once loaded.
CO_VARARGS = 0x04
CO_COROUTINE = 0x80

# Other platforms' conventions, beside this file. Imported before the function's folder joins sys.path
# (and -I leaves the script's folder out of it), so a module of the function's own cannot shadow it.
GUEST_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, GUEST_DIR)
import hearth_adapters as adapters  # noqa: E402
del sys.path[0]

T_BIND, T_INVOKE, T_SHUTDOWN, T_REPLY = 1, 2, 4, 5
T_READY, T_BOUND, T_RESULT, T_ERROR, T_LOG, T_CALL = 16, 17, 18, 19, 20, 21
HEADER = struct.Struct(">IBII")



class PortChannel:
    """fd 3 as a microVM's virtio-serial port (a character device, not a socket): the same two calls."""

    def sendall(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(3, view):]

    def recv(self, size):
        return os.read(3, size)


channel = PortChannel() if stat.S_ISCHR(os.fstat(3).st_mode) else socket.socket(fileno=3)
current_invocation = contextvars.ContextVar("hearth_invocation", default=0)


def frame(kind, ident, meta, body=b""):
    meta_bytes = b"" if meta is None else json.dumps(meta, separators=(",", ":"), default=str).encode()
    return HEADER.pack(9 + len(meta_bytes) + len(body), kind, ident, len(meta_bytes)) + meta_bytes + body


def send(kind, ident, meta, body=b""):
    channel.sendall(frame(kind, ident, meta, body))


class FrameReader:
    def __init__(self):
        self.buffer = bytearray()

    def _take(self):
        if len(self.buffer) < 4:
            return None
        (length,) = struct.unpack_from(">I", self.buffer, 0)
        if len(self.buffer) < 4 + length:
            return None
        _, kind, ident, meta_length = HEADER.unpack_from(self.buffer, 0)
        start = HEADER.size
        meta = json.loads(self.buffer[start : start + meta_length]) if meta_length else None
        body = bytes(self.buffer[start + meta_length : 4 + length])
        del self.buffer[: 4 + length]
        return kind, ident, meta, body

    def read(self):
        while True:
            taken = self._take()
            if taken is not None:
                return taken
            chunk = channel.recv(1 << 16)
            if not chunk:
                # The host went away: nothing left to serve.
                os._exit(0)
            self.buffer += chunk


class HostCallError(Exception):
    """A call into the platform (ctx.invoke, ctx.state) failed; the message says why."""


class HostCalls:
    """Calls into the platform on behalf of an invocation: a Call frame out, a Reply frame back.

    Sync handlers block until the reply (frames read meanwhile are kept for the main loop); coroutine
    handlers get a future that the reader thread resolves.
    """

    def __init__(self):
        self.next_id = 1
        self.reader = None
        self.deferred = collections.deque()
        self.futures = {}
        self.loop = None

    def call(self, seq, method, args):
        ident = self.next_id
        self.next_id += 1
        if self.loop is not None:
            future = self.loop.create_future()
            self.futures[ident] = future
            send(T_CALL, ident, [seq, method, args])
            return future
        send(T_CALL, ident, [seq, method, args])
        while True:
            frame = self.reader.read()
            if frame[0] == T_REPLY and frame[1] == ident:
                return self.settle(frame[2])
            self.deferred.append(frame)

    def next_frame(self):
        return self.deferred.popleft() if self.deferred else self.reader.read()

    def resolve(self, ident, meta):
        future = self.futures.pop(ident, None)
        if future is None or future.done():
            return
        try:
            future.set_result(self.settle(meta))
        except HostCallError as error:
            future.set_exception(error)

    @staticmethod
    def settle(meta):
        ok, value = meta
        if ok:
            return value
        value = value or {}
        raise HostCallError(f"{value.get('type', 'Error')}: {value.get('message', 'platform call failed')}")


host_calls = HostCalls()


LOG_MAX = 512 * 1024
# The platform takes 1000 records or 1 MiB of an instance's output a second and drops the rest after reading
# each frame; dropping it here spares the platform that reading (issue 10, the log flood).
LOG_RECORDS_PER_SECOND = 1000
LOG_BYTES_PER_SECOND = 1024 * 1024


class LogRate:
    """One second's budget of output, shared by stdout and stderr, and what was dropped past it."""

    def __init__(self):
        self.window_ends = 0.0
        self.records = 0
        self.bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0

    def take(self, size):
        now = time.monotonic()
        if now >= self.window_ends:
            self.window_ends = now + 1.0
            self.records = 0
            self.bytes = 0
            self.report()
        if self.records >= LOG_RECORDS_PER_SECOND or self.bytes + size > LOG_BYTES_PER_SECOND:
            self.dropped += 1
            self.dropped_bytes += size
            return False
        self.records += 1
        self.bytes += size
        return True

    def report(self):
        if self.dropped == 0:
            return
        notice = (
            f"[hearth] {self.dropped} writes ({self.dropped_bytes} bytes) of output dropped: written faster than "
            f"the platform takes them ({LOG_RECORDS_PER_SECOND} records or 1 MiB a second)\n"
        )
        self.dropped = 0
        self.dropped_bytes = 0
        send(T_LOG, current_invocation.get(), 2, notice.encode())


log_rate = LogRate()


class LogStream:
    """Replaces sys.stdout/sys.stderr: whole lines go to the host tagged with the current invocation."""

    def __init__(self, tag):
        self.tag = tag
        self.pending = ""
        self.encoding = "utf-8"
        self.errors = "replace"

    def write(self, text):
        if not isinstance(text, str):
            text = str(text)
        self.pending += text
        if "\n" in self.pending:
            cut = self.pending.rindex("\n") + 1
            chunk, self.pending = self.pending[:cut], self.pending[cut:]
            self.send(chunk)
        return len(text)

    def send(self, text):
        # The host takes log frames of up to 1 MiB and keeps 16 KiB of a record, so a longer write is cut
        # (between characters) rather than sent whole: one write stays one record, as it always was.
        data = text.encode("utf-8", "replace")
        if len(data) > LOG_MAX:
            end = LOG_MAX
            while end > 0 and data[end] & 0xC0 == 0x80:
                end -= 1
            data = data[:end] + f"… [truncated {len(data) - end} bytes]\n".encode()
        if log_rate.take(len(data)):
            send(T_LOG, current_invocation.get(), self.tag, data)

    def flush(self):
        if self.pending:
            chunk, self.pending = self.pending, ""
            self.send(chunk)

    def isatty(self):
        return False

    def fileno(self):
        return self.tag

    def writable(self):
        return True


def user_frames(tb):
    """The traceback without the guest's own frames or the import machinery: only the user's code."""
    import traceback

    frames = [frame for frame in traceback.extract_tb(tb) if os.path.dirname(frame.filename) != GUEST_DIR and not frame.filename.startswith("<frozen ")]
    return traceback.StackSummary.from_list(frames)


def clip(text):
    """An error's text is kept to 64 KiB: the host bounds the frames it reads and ends a guest past them."""
    return text if len(text) <= 65536 else f"{text[:65536]}… ({len(text) - 65536} more characters)"


def describe(error):
    import traceback

    lines = ["Traceback (most recent call last):\n"] if error.__traceback__ else []
    lines += user_frames(error.__traceback__).format()
    lines += traceback.format_exception_only(type(error), error)
    return {"type": type(error).__name__, "message": clip(str(error)), "stack": clip("".join(lines))}


def derived_traceparent(invocation_id):
    """An invocation that started its own trace: ids derived from its UUID (see src/domain/trace.ts)."""
    digits = invocation_id.replace("-", "")
    return f"00-{digits}-{digits[16:]}-01"


class State:
    """ctx.state: each operation is one Call frame to the platform, which keeps the data (SQLite or Redis),
    so every instance of the function sees the same values. Sync handlers get results; async handlers get
    awaitables. TTLs are seconds or durations such as "10m"."""

    def __init__(self, seq, shared):
        self._seq = seq
        self._shared = shared

    def _call(self, method, args):
        if self._shared:
            args["shared"] = True
        return host_calls.call(self._seq, method, args)

    @property
    def shared(self):
        """The namespace-wide store, shared by every function of this namespace."""
        return State(self._seq, True)

    def get(self, key):
        """The value, or None when the key is absent or expired."""
        return self._call("state.get", {"key": key})

    def set(self, key, value, ttl=None):
        return self._call("state.set", {"key": key, "value": value, "ttl": ttl})

    def delete(self, key):
        """Whether the key was there."""
        return self._call("state.delete", {"key": key})

    def incr(self, key, by=1, ttl=None):
        """Adds `by` atomically and returns the new count; `ttl` applies to a new counter."""
        return self._call("state.incr", {"key": key, "by": by, "ttl": ttl})

    def cas(self, key, expected, value, ttl=None):
        """Sets `value` only if the key holds `expected` (None: only if absent); returns whether it did."""
        return self._call("state.cas", {"key": key, "expected": expected, "value": value, "ttl": ttl})

    def keys(self, prefix="", limit=None):
        """Keys starting with `prefix`, sorted."""
        return self._call("state.keys", {"prefix": prefix, "limit": limit})


class StreamConflictError(HostCallError):
    """ctx.events.append: the stream moved past expected_version; read it again and retry."""

    code = "HEARTH_E_STREAM_CONFLICT"


class Events:
    """ctx.events: event-sourced streams kept by the platform (append with expected_version, read, snapshots).
    Sync handlers get results; async handlers get awaitables. A stream is the function's own, or the
    namespace's when the spec lists it in streams.shared."""

    ConflictError = StreamConflictError

    def __init__(self, seq):
        self._seq = seq

    def _call(self, method, args):
        try:
            result = host_calls.call(self._seq, method, args)
        except HostCallError as error:
            raise _conflict(error) from None
        if _isawaitable(result):
            return _awaiting(result)
        return result

    def append(self, stream, events, expected_version=None):
        """Appends {type, data, id?} event(s) atomically; raises ConflictError when expected_version is stale."""
        return self._call("events.append", {"stream": stream, "events": events, "expectedVersion": expected_version})

    def read(self, stream, start=1, limit=None):
        """Events from version `start`, at most `limit` (default 1000)."""
        return self._call("events.read", {"stream": stream, "from": start, "limit": limit})

    def version(self, stream):
        return self._call("events.version", {"stream": stream})

    def snapshot(self, stream, version, state):
        return self._call("events.snapshot", {"stream": stream, "version": version, "state": state})

    def latest_snapshot(self, stream):
        """{"version", "state"} or None."""
        return self._call("events.latestSnapshot", {"stream": stream})


def _conflict(error):
    text = str(error)
    return StreamConflictError(text) if text.startswith("HEARTH_E_STREAM_CONFLICT") else error


async def _awaiting(future):
    try:
        return await future
    except HostCallError as error:
        raise _conflict(error) from None


class Logger:
    def __init__(self):
        for level in ("debug", "info", "warning", "warn", "error"):
            setattr(self, level, self._at(level))

    @staticmethod
    def _at(level):
        def log(message, **fields):
            print(json.dumps({"level": level, "msg": message, **fields}, default=str))

        return log


class Context:
    """The invocation context: Hearth's fields plus AWS Lambda's, so Lambda handlers run unchanged."""

    def __init__(self, meta, bound, seq):
        self._seq = seq
        self.invocation_id = self.aws_request_id = meta["invocationId"]
        self.function_name = bound["functionName"]
        self.function_version = str(bound["version"])
        self.namespace = bound["namespace"]
        self.deadline = meta["deadline"]
        self.memory_limit_in_mb = str(bound["memoryMiB"])
        self.invoked_function_arn = f"arn:hearth:function:{self.namespace}:{self.function_name}:{self.function_version}"
        self.log_group_name = f"/hearth/{self.namespace}/{self.function_name}"
        self.log_stream_name = str(os.getpid())
        self.log = Logger()
        self.client_context = None
        self.identity = None
        self.traceparent = meta.get("traceparent") or derived_traceparent(self.invocation_id)
        self.trace_id = self.traceparent[3:35]
        # Who invoked it (API key or JWT claims) for a function with auth: key | jwt; None when public.
        self.auth = meta.get("auth")

    @property
    def state(self):
        """This function's key-value state (get, set with ttl, delete, incr, cas, keys); .shared is the namespace's."""
        return State(self._seq, False)

    @property
    def events(self):
        """Event-sourced streams: append (expected_version), read, version, snapshot, latest_snapshot."""
        return Events(self._seq)

    def emit(self, events):
        """Sends one CloudEvent (a dict in structured form) or a list of them through the platform's event
        routing: to the function `subject` names, else to the matching Triggers (awaitable in async handlers)."""
        return host_calls.call(self._seq, "emit", {"events": events})

    def invoke(self, name, event=None):
        """Invokes another function (`name` or `name.namespace`) with `event` as its JSON body, within this
        invocation's deadline; returns its response {statusCode, headers, body} (awaitable in async handlers)."""
        return host_calls.call(self._seq, "invoke", {"name": name, "event": event})

    def get_remaining_time_in_millis(self):
        return max(0, int(self.deadline - time.time() * 1000))


JSONISH = ("application/json",)
TEXTUAL = ("text/", "application/x-www-form-urlencoded", "application/xml", "application/javascript", "application/graphql", "application/x-ndjson")


def is_json(content_type):
    base = content_type.split(";")[0].strip()
    return base.startswith(JSONISH) or (base.startswith("application/") and base.endswith("+json"))


def is_text(content_type):
    base = content_type.split(";")[0].strip()
    return base.startswith(TEXTUAL) or base.endswith("+xml")


def parse_query(raw):
    query = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        previous = query.get(key)
        if previous is None:
            query[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            query[key] = [previous, value]
    return query


SINGLE_VALUED = frozenset((
    "age", "authorization", "content-length", "content-type", "etag", "expires", "from", "host",
    "if-modified-since", "if-unmodified-since", "last-modified", "location", "max-forwards",
    "proxy-authorization", "referer", "retry-after", "server", "user-agent",
))


def header_dict(raw):
    """The raw [name, value, ...] list as a dict with lower-case names, repeats joined as Node does."""
    headers = {}
    for i in range(0, len(raw) - 1, 2):
        name, value = raw[i].lower(), raw[i + 1]
        previous = headers.get(name)
        if previous is None:
            headers[name] = value
        elif name not in SINGLE_VALUED:
            headers[name] = previous + ("; " if name == "cookie" else ", ") + value
    return headers


def decode_body(body, content_type):
    if not body:
        return None
    if is_json(content_type):
        text = body.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text
    if is_text(content_type):
        return body.decode("utf-8", "replace")
    return body


def cloud_event(attributes, body):
    """An event delivery (trigger, async queue): the CloudEvents attributes with the data decoded."""
    event = dict(attributes.get("extensions") or {})
    event.update({k: v for k, v in attributes.items() if k != "extensions"})
    event["data"] = decode_body(body, str(attributes.get("datacontenttype") or "application/json").lower())
    return event


def hearth_event(meta, body):
    if meta.get("event"):
        return cloud_event(meta["event"], body)
    headers = header_dict(meta["rawHeaders"])
    content_type = str(headers.get("content-type", "")).lower()
    value = decode_body(body, content_type)
    return {
        "method": meta["method"],
        "path": meta["path"],
        "query": parse_query(meta["rawQuery"]),
        "rawQuery": meta["rawQuery"],
        "headers": headers,
        "body": value,
    }


def lambda_event(meta, body):
    headers = header_dict(meta["rawHeaders"])
    cookie = headers.pop("cookie", None)
    content_type = str(headers.get("content-type", "")).lower()
    textual = not body or is_json(content_type) or is_text(content_type)
    query = {}
    for key, value in parse_qsl(meta["rawQuery"], keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = int(time.time() * 1000)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": meta["path"],
        "rawQueryString": meta["rawQuery"],
        "cookies": cookie.split("; ") if isinstance(cookie, str) else None,
        "headers": headers,
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "hearth",
            "apiId": "hearth",
            "domainName": headers.get("host", "localhost"),
            "http": {"method": meta["method"], "path": meta["path"], "protocol": "HTTP/1.1", "sourceIp": meta["sourceIp"], "userAgent": headers.get("user-agent", "")},
            "requestId": meta["invocationId"],
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now / 1000)),
            "timeEpoch": now,
        },
        "body": (body.decode("utf-8", "replace") if textual else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": not textual,
    }


def rest_event(meta, body):
    """The API Gateway REST API (payload 1.0) proxy event: single values are the last of each name, as AWS does."""
    raw = meta["rawHeaders"]
    multi_headers = {}
    for i in range(0, len(raw) - 1, 2):
        multi_headers.setdefault(raw[i], []).append(raw[i + 1])
    lower = header_dict(raw)
    query = multi_query = None
    if meta["rawQuery"]:
        query, multi_query = {}, {}
        for key, value in parse_qsl(meta["rawQuery"], keep_blank_values=True):
            query[key] = value
            multi_query.setdefault(key, []).append(value)
    content_type = str(lower.get("content-type", "")).lower()
    textual = not body or is_json(content_type) or is_text(content_type)
    proxy = meta["path"].lstrip("/")
    resource = "/{proxy+}" if proxy else "/"
    now = int(time.time() * 1000)
    return {
        "resource": resource,
        "path": meta["path"],
        "httpMethod": meta["method"],
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": {"proxy": proxy} if proxy else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "hearth",
            "apiId": "hearth",
            "resourceId": "hearth",
            "resourcePath": resource,
            "httpMethod": meta["method"],
            "path": meta["path"],
            "protocol": "HTTP/1.1",
            "stage": "$default",
            "domainName": lower.get("host", "localhost"),
            "domainPrefix": lower.get("host", "localhost").split(".")[0],
            "requestId": meta["invocationId"],
            "extendedRequestId": meta["invocationId"],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now / 1000)),
            "requestTimeEpoch": now,
            # API Gateway sends every identity field, None where the caller has none (no IAM or Cognito here).
            "identity": {
                "cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None, "caller": None,
                "sourceIp": meta["sourceIp"], "principalOrgId": None, "accessKey": None,
                "cognitoAuthenticationType": None, "cognitoAuthenticationProvider": None, "userArn": None,
                "userAgent": lower.get("user-agent"), "user": None,
            },
        },
        "body": (body.decode("utf-8", "replace") if textual else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": not textual,
    }


class BadEvent(Exception):
    """A request the direct format cannot make an event of: answered 400 by the guest, not a function error."""


def direct_event(meta, body):
    """Direct invocation: the body, parsed as JSON, is the event itself (no body: {}, as Lambda's console sends)."""
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as error:
        # An event delivery's data that is not JSON is still that data.
        if meta.get("event"):
            return cloud_event(meta["event"], body)
        raise BadEvent(f"body: got {len(body)} bytes that are not JSON ({error}), expected a JSON event (eventFormat lambda-direct)") from None


def lambda_v2_event(meta, body):
    return hearth_event(meta, body) if meta.get("event") else lambda_event(meta, body)


def lambda_v1_event(meta, body):
    return hearth_event(meta, body) if meta.get("event") else rest_event(meta, body)


# spec.eventFormat → how the event is made; `auto` is Hearth's own for Python.
EVENT_MAKERS = {
    "lambda": lambda_v2_event,
    "lambda-v2": lambda_v2_event,
    "lambda-v1": lambda_v1_event,
    "lambda-direct": direct_event,
}


def to_response(value):
    if isinstance(value, dict) and "statusCode" in value:
        status = value["statusCode"]
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise ValueError(f"statusCode must be an integer from 200 to 599, got {status!r}")
        headers = {str(k).lower(): str(v) for k, v in (value.get("headers") or {}).items() if v is not None}
        for name, values in (value.get("multiValueHeaders") or {}).items():
            headers[str(name).lower()] = [str(v) for v in values]
        if value.get("cookies"):
            headers["set-cookie"] = [str(c) for c in value["cookies"]]
        raw = value.get("body")
        if raw is None:
            body = b""
        elif isinstance(raw, str):
            body = base64.b64decode(raw) if value.get("isBase64Encoded") else raw.encode("utf-8")
        elif isinstance(raw, (bytes, bytearray, memoryview)):
            body = bytes(raw)
        else:
            body = json.dumps(raw, default=str).encode()
            headers.setdefault("content-type", "application/json")
        if "content-type" not in headers and body:
            headers["content-type"] = "application/json" if body[:1] in (b"{", b"[") else "text/plain; charset=utf-8"
        return status, headers, body
    if isinstance(value, str):
        return 200, {"content-type": "text/plain; charset=utf-8"}, value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 200, {"content-type": "application/octet-stream"}, bytes(value)
    # A returned CloudEvent in structured form is marked as one, so the platform routes it on (issue 20).
    cloud_event = isinstance(value, dict) and "specversion" in value and "type" in value
    content_type = "application/cloudevents+json" if cloud_event else "application/json"
    return 200, {"content-type": content_type}, json.dumps(value, default=str).encode()


def _isawaitable(value):
    # inspect.isawaitable without importing inspect (see the note at the imports).
    return isinstance(value, types.CoroutineType) or hasattr(type(value), "__await__")


def _iscoroutinefunction(fn):
    code = getattr(fn, "__code__", None)
    if isinstance(fn, types.FunctionType) and code is not None and not hasattr(fn, "__wrapped__"):
        return bool(code.co_flags & CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn)


def arity(fn):
    # A plain function's positional parameters from its code object; anything else (a partial, a class, a
    # callable object, a decorated function) through inspect.signature.
    if isinstance(fn, types.FunctionType) and not hasattr(fn, "__wrapped__") and not hasattr(fn, "__signature__"):
        code = fn.__code__
        if code.co_flags & CO_VARARGS:
            return 2
        # co_argcount counts the positional-only parameters too.
        return min(code.co_argcount, 2)
    import inspect

    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    positional = 0
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            return 2
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return min(positional, 2)


# --- SM4 on the transaction path (issue 13) ---------------------------------------------------------------
# A copy of src/compliance/sm4-gcm.ts: GCM from OpenSSL's sm4-ctr and sm4-ecb (through ctypes, on the
# libcrypto this Python already loaded for hashlib: no package needed) plus GHASH written out.
# Wire format: 0x01 | nonce (12) | ciphertext | tag (16), the version byte as associated data.
sm4_key = None
_libcrypto = None
_GCM_R = 0xE1 << 120


def _crypto():
    global _libcrypto
    if _libcrypto is None:
        import ctypes
        import hashlib  # noqa: F401 - loads libcrypto into the process

        path = "libcrypto.so.3"
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "libcrypto.so" in line:
                    path = line.split()[-1]
                    break
        lib = ctypes.CDLL(path)
        lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        lib.EVP_get_cipherbyname.restype = ctypes.c_void_p
        lib.EVP_get_cipherbyname.argtypes = [ctypes.c_char_p]
        lib.EVP_EncryptInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.EVP_CIPHER_CTX_set_padding.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.EVP_EncryptUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int]
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        _libcrypto = (lib, ctypes)
    return _libcrypto


def _sm4(name, key, iv, data):
    lib, ctypes = _crypto()
    ctx = lib.EVP_CIPHER_CTX_new()
    try:
        if not lib.EVP_EncryptInit_ex(ctx, lib.EVP_get_cipherbyname(name), None, key, iv):
            raise RuntimeError(f"OpenSSL has no {name.decode()}")
        lib.EVP_CIPHER_CTX_set_padding(ctx, 0)
        out = ctypes.create_string_buffer(len(data) + 16)
        written = ctypes.c_int(0)
        lib.EVP_EncryptUpdate(ctx, out, ctypes.byref(written), data, len(data))
        return out.raw[: written.value]
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)


def _times_x(value):
    return (value >> 1) ^ _GCM_R if value & 1 else value >> 1


# Shoup's 8-bit tables, as src/compliance/sm4-gcm.ts: what eight bits shifted out fold back in, and per key
# the 256 multiples n*H (n a byte, its high bit the x^0 coefficient); 16 steps a block instead of 128.
def _reduce_8():
    table = []
    for bits in range(256):
        value = bits
        for _ in range(8):
            value = _times_x(value)
        table.append(value)
    return table


_REDUCE_8 = _reduce_8()
_ghash_tables = {}


def _multiples(h):
    table = _ghash_tables.get(h)
    if table is None:
        rows = [0] * 256
        value = h
        bit = 0x80
        while bit:
            rows[bit] = value
            value = _times_x(value)
            bit >>= 1
        for n in range(1, 256):
            high = 1 << (n.bit_length() - 1)
            if n != high:
                rows[n] = rows[high] ^ rows[n ^ high]
        table = _ghash_tables[h] = rows
    return table


def _gmul(x, table):
    z = 0
    for shift in range(0, 128, 8):
        z = (z >> 8) ^ _REDUCE_8[z & 0xFF] ^ table[(x >> shift) & 0xFF]
    return z


def _counter(nonce, value):
    return nonce + value.to_bytes(4, "big")


def _gcm_tag(key, nonce, aad, ciphertext):
    table = _multiples(int.from_bytes(_sm4(b"sm4-ecb", key, None, bytes(16)), "big"))
    y = 0
    for data in (aad, ciphertext):
        for offset in range(0, len(data), 16):
            block = data[offset : offset + 16].ljust(16, b"\0")
            y = _gmul(y ^ int.from_bytes(block, "big"), table)
    lengths = (len(aad) * 8).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    y = _gmul(y ^ int.from_bytes(lengths, "big"), table)
    y ^= int.from_bytes(_sm4(b"sm4-ecb", key, None, _counter(nonce, 1)), "big")
    return y.to_bytes(16, "big")


def open_invocation(key, meta, body):
    """The request's body opened and its content type restored; a refusal is a 400 naming the problem."""
    if not body:
        return meta, body
    raw = meta["rawHeaders"]
    kind, plain_type, kept = "", "application/octet-stream", []
    for i in range(0, len(raw), 2):
        name = raw[i].lower()
        if name == "content-type":
            kind = raw[i + 1].split(";")[0].strip().lower()
        elif name == "x-hearth-plain-content-type":
            plain_type = raw[i + 1]
        elif name != "content-length":
            kept += [raw[i], raw[i + 1]]
    if kind != "application/hearth-sm4":
        got = kind or "no content type"
        raise BadEvent(
            f"this function takes SM4-GCM sealed bodies (content-type application/hearth-sm4), got {got}; "
            "seal it with: hearth invoke --encrypt --key-file KEY"
        )
    body = bytes(body)
    if len(body) < 29 or body[0] != 1:
        raise BadEvent("the body is not in the hearth-sm4 wire format (version 1, 12-byte nonce, ciphertext, 16-byte tag)")
    nonce, ciphertext, tag = body[1:13], body[13:-16], body[-16:]
    import hmac

    if not hmac.compare_digest(_gcm_tag(key, nonce, body[:1], ciphertext), tag):
        raise BadEvent("the SM4-GCM tag does not match: the body was sealed under another key, or altered")
    plain = _sm4(b"sm4-ctr", key, _counter(nonce, 2), ciphertext)
    kept += ["content-type", plain_type, "content-length", str(len(plain))]
    return {**meta, "rawHeaders": kept}, plain


def seal_response(key, headers, body):
    plain_type = headers.get("content-type")
    nonce = os.urandom(12)
    ciphertext = _sm4(b"sm4-ctr", key, _counter(nonce, 2), bytes(body))
    sealed = b"\x01" + nonce + ciphertext + _gcm_tag(key, nonce, b"\x01", ciphertext)
    headers = {**headers, "content-type": "application/hearth-sm4"}
    if isinstance(plain_type, str):
        headers["x-hearth-plain-content-type"] = plain_type
    return headers, sealed


def write_secret_files():
    """Secrets with a mountPath (issue 13): HEARTH_SECRET_FILES, JSON of {"<mountPath>/<key>": base64},
    becomes files in a 0700 folder of the instance's private tmp named by HEARTH_SECRETS_DIR."""
    encoded = os.environ.pop("HEARTH_SECRET_FILES", None)
    if encoded is None:
        return
    import tempfile

    folder = tempfile.mkdtemp(prefix="hearth-secrets-")
    for path, value in json.loads(encoded).items():
        target = os.path.join(folder, path)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(base64.b64decode(value))
    os.environ["HEARTH_SECRETS_DIR"] = folder


class Function:
    def __init__(self, bound):
        global max_body_bytes
        self.bound = bound
        max_body_bytes = bound.get("maxBodyBytes")
        os.environ.clear()
        # Lambda's defaults where the function sets none.
        os.environ.update(AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
        os.environ.update(bound["env"])
        os.environ.update(
            HEARTH_FUNCTION=bound["functionName"],
            HEARTH_NAMESPACE=bound["namespace"],
            HEARTH_VERSION=str(bound["version"]),
            AWS_LAMBDA_FUNCTION_NAME=bound["functionName"],
            AWS_LAMBDA_FUNCTION_VERSION=str(bound["version"]),
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(bound["memoryMiB"]),
            AWS_LAMBDA_LOG_GROUP_NAME=f"/hearth/{bound['namespace']}/{bound['functionName']}",
            AWS_LAMBDA_LOG_STREAM_NAME=str(os.getpid()),
            AWS_EXECUTION_ENV=f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
            LAMBDA_TASK_ROOT=bound["codeDir"],
            _HANDLER=bound["handler"],
        )
        write_secret_files()
        global sm4_key
        encoded_key = os.environ.pop("HEARTH_SM4_KEY", None)
        sm4_key = None if encoded_key is None else bytes.fromhex(encoded_key)
        os.chdir(bound["codeDir"])
        sys.path.insert(0, bound["codeDir"])
        if bound.get("depsDir"):
            site.addsitedir(bound["depsDir"])
        event_format = bound["eventFormat"]
        if event_format in ("auto", "gcf", "gcf-cloudevent"):
            adapters.install_functions_framework_stand_in()
        if event_format in ("gcf", "fission"):
            adapters.install_flask_stand_in()
        spec = bound["handler"]
        module_name, _, attribute = spec.rpartition(".")
        if not module_name:
            module_name, attribute = spec, "handler"
        module_name = module_name.replace("/", ".")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name or module_name.startswith(f"{error.name}."):
                raise LookupError(f'module "{module_name}" not found in the function folder') from None
            raise
        fn = getattr(module, attribute, None)
        if not callable(fn):
            raise LookupError(f'{module_name} has no function named "{attribute}"')
        self.fn = fn
        self.arity = arity(fn)
        self.concurrent = _iscoroutinefunction(fn)
        global convert
        self.make_event = EVENT_MAKERS.get(event_format, hearth_event)
        self.format = {lambda_v2_event: "lambda-v2", lambda_v1_event: "lambda-v1", direct_event: "lambda-direct"}.get(self.make_event, "hearth")
        convert = direct_response if self.format == "lambda-direct" else to_response
        # Another platform's convention: its arguments, and its way of answering.
        self.adapter = None
        kind = adapters.gcf_kind(fn)
        if event_format == "gcf-cloudevent" or (event_format in ("auto", "gcf") and kind == "cloudevent"):
            self.format, self.adapter, convert = "gcf-cloudevent", gcf_cloud_event_call, cloud_event_answer
        elif event_format == "gcf" or (event_format == "auto" and kind == "http"):
            self.format, self.adapter, convert = "gcf", gcf_call, adapters.flask_response
        elif event_format == "openfaas-classic" or (event_format == "openfaas" and self.arity < 2):
            self.format, self.adapter, convert = "openfaas-classic", openfaas_classic_call, adapters.flask_response
        elif event_format == "openfaas":
            self.format, self.adapter, convert = "openfaas", openfaas_http_call, adapters.openfaas_http_response
        elif event_format == "fission":
            self.format, self.adapter, convert = "fission", fission_call, adapters.flask_response
        elif event_format in ("lambda-alb", "netlify"):
            self.format = event_format
            self.make_event = alb_event if event_format == "lambda-alb" else netlify_event

    def call(self, meta, body, seq):
        if sm4_key is not None:
            meta, body = open_invocation(sm4_key, meta, body)
        # The Lambda Invoke API asks for direct invocation per request, whatever the convention in force.
        if meta.get("direct"):
            event = direct_event(meta, body)
        elif self.adapter is not None:
            return self.adapter(self, meta, body, seq)
        else:
            event = self.make_event(meta, body)
        if self.arity >= 2:
            return self.fn(event, Context(meta, self.bound, seq))
        if self.arity == 1:
            return self.fn(event)
        return self.fn()


def is_textual(content_type):
    return is_json(content_type) or is_text(content_type)


def alb_event(meta, body):
    return hearth_event(meta, body) if meta.get("event") else adapters.alb_event(meta, body, header_dict(meta["rawHeaders"]), is_textual)


def netlify_event(meta, body):
    return hearth_event(meta, body) if meta.get("event") else adapters.netlify_event(meta, body, header_dict(meta["rawHeaders"]), is_textual)


def gcf_call(function, meta, body, seq):
    return function.fn(adapters.Request(meta, body, header_dict(meta["rawHeaders"])))


def gcf_cloud_event_call(function, meta, body, seq):
    return function.fn(adapters.cloud_event_of(meta, body, header_dict(meta["rawHeaders"]), decode_body, cloud_event))


def cloud_event_answer(_value):
    # The Functions Framework answers an event function "OK" whatever it returns.
    return 200, {"content-type": "text/plain; charset=utf-8"}, b"OK"


def openfaas_classic_call(function, meta, body, seq):
    # The classic and python3-flask templates: handle(req) gets the body as text.
    return function.fn(body.decode("utf-8", "replace"))


def openfaas_http_call(function, meta, body, seq):
    return function.fn(adapters.OpenFaasEvent(meta, body, header_dict(meta["rawHeaders"])), adapters.OpenFaasContext())


def fission_call(function, meta, body, seq):
    # Fission's main() reads flask.request: the request of this invocation, wherever it runs.
    if adapters.real_flask_app is not None:
        return adapters.in_flask_context(meta, body, function.fn)
    adapters.current_request.set(adapters.Request(meta, body, header_dict(meta["rawHeaders"])))
    return function.fn()


def direct_response(value):
    return 200, {"content-type": "application/json"}, json.dumps(value, default=str).encode()


def flat_headers(headers):
    flat = []
    for name, value in headers.items():
        if isinstance(value, list):
            for item in value:
                flat.extend((name, item))
        else:
            flat.extend((name, value))
    return flat


# "direct" (1): direct invocation for this request whatever the bound format (the Lambda Invoke API).
INVOKE_FIELDS = ("invocationId", "method", "path", "rawQuery", "rawHeaders", "deadline", "sourceIp", "event", "traceparent", "direct", "auth")


def invoke_from_wire(wire):
    """Invoke frames carry their meta positionally (see InvokeWire in src/runtime/ipc/protocol.ts)."""
    return dict(zip(INVOKE_FIELDS, wire))


class ResponseTooLarge(Exception):
    pass


# limits.maxBody, from the Bind frame: the host ends a guest whose response is larger, so it is refused here.
max_body_bytes = None
# How the return value answers: Hearth's (and Lambda's) shapes, or the convention's in force.
convert = None


def reply(ident, value, direct=False):
    status, headers, body = direct_response(value) if direct else convert(value)
    if sm4_key is not None:
        headers, body = seal_response(sm4_key, headers, body)
    if max_body_bytes is not None and len(body) > max_body_bytes:
        raise ResponseTooLarge(f"the response body is {len(body)} bytes; limits.maxBody allows at most {max_body_bytes}")
    send(T_RESULT, ident, [status, flat_headers(headers)], body)


def fail(ident, meta, error):
    if isinstance(error, adapters.BadRequest):
        send(T_RESULT, ident, [400, ["content-type", "text/plain; charset=utf-8"]], str(error).encode())
    elif isinstance(error, BadEvent):
        answer = {"error": {"code": "HEARTH_E_BAD_REQUEST", "message": str(error), "invocationId": meta["invocationId"]}}
        send(T_RESULT, ident, [400, ["content-type", "application/json"]], json.dumps(answer).encode())
    else:
        send(T_ERROR, ident, describe(error))


def flush_logs():
    sys.stdout.flush()
    sys.stderr.flush()
    # An invocation that flooded says so when it ends, even if it writes nothing more.
    log_rate.report()


def serve_sync(function, reader):
    while True:
        kind, ident, meta, body = host_calls.next_frame()
        if kind == T_SHUTDOWN:
            return
        if kind != T_INVOKE:
            continue
        token = current_invocation.set(ident)
        invocation = None
        try:
            invocation = invoke_from_wire(meta)
            # One invocation at a time here, so the environment can carry its trace for libraries that read it.
            os.environ["TRACEPARENT"] = invocation.get("traceparent") or derived_traceparent(invocation["invocationId"])
            result = function.call(invocation, body, ident)
            if _isawaitable(result):
                import asyncio

                result = asyncio.run(result)
            flush_logs()
            reply(ident, result, invocation.get("direct"))
        except BaseException as error:  # noqa: BLE001 - every failure is the function's, reported to the host
            flush_logs()
            if isinstance(error, SystemExit):
                raise
            fail(ident, invocation, error)
        finally:
            current_invocation.reset(token)


async def serve_async(function, reader):
    import asyncio
    import threading

    # Reads happen on a thread so the socket can stay blocking for sendall from any context (logs).
    loop = asyncio.get_running_loop()
    frames = asyncio.Queue()

    host_calls.loop = loop

    def pump():
        while True:
            frame = reader.read()
            if frame[0] == T_REPLY:
                loop.call_soon_threadsafe(host_calls.resolve, frame[1], frame[2])
            else:
                loop.call_soon_threadsafe(frames.put_nowait, frame)

    threading.Thread(target=pump, daemon=True).start()
    tasks = set()

    async def run(ident, meta, body):
        current_invocation.set(ident)
        try:
            result = await function.call(meta, body, ident)
            flush_logs()
            reply(ident, result, meta.get("direct"))
        except Exception as error:  # noqa: BLE001
            flush_logs()
            fail(ident, meta, error)

    while True:
        kind, ident, meta, body = await frames.get()
        if kind == T_SHUTDOWN:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            return
        if kind == T_INVOKE:
            task = asyncio.ensure_future(run(ident, invoke_from_wire(meta), body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


# A handler's shape, for the compiler's first run (`main`).
WARM_SOURCE = """import json


def handler(event, context):
    body = {"hello": event.get("name", "world"), "items": [1, 2.5, None, True]}
    return {"statusCode": 200, "body": json.dumps(body)}
"""


def main():
    sys.stdout = LogStream(1)
    sys.stderr = LogStream(2)
    # The boot loads everything from bytecode, so a function's module was the first source this process
    # compiled: the compiler's first run cost ~0.9 ms of CPU inside the bind in a burst of cold starts, a
    # later one ~0.1 ms (issue 11). It runs once here, while the cell waits in the pool.
    compile(WARM_SOURCE, "<hearth-warm>", "exec", dont_inherit=True)
    # What the boot made (the guest, the standard library) is never garbage: frozen, it is left out of every
    # later collection, so one that falls in the bind or the first invocation walks only what they made (a
    # full collection walks the boot's ~9,000 objects, ~0.8 ms).
    gc.collect()
    gc.freeze()
    send(T_READY, 0, {"runtime": "python3", "pid": os.getpid(), "python": sys.version.split()[0]})
    reader = FrameReader()
    host_calls.reader = reader
    while True:
        kind, _, meta, _ = reader.read()
        if kind == T_SHUTDOWN:
            return
        if kind == T_BIND:
            break
    try:
        function = Function(meta)
    except BaseException as error:  # noqa: BLE001 - a broken module must be reported, not crash silently
        flush_logs()
        send(T_BOUND, 0, {"ok": False, "error": describe(error)})
        return
    flush_logs()
    send(T_BOUND, 0, {"ok": True, "concurrent": function.concurrent, "eventFormat": function.format})
    if function.concurrent:
        import asyncio

        asyncio.run(serve_async(function, reader))
    else:
        serve_sync(function, reader)
