"""Other platforms' handler conventions for the Python guest (issue 18): each makes the arguments that
platform's handlers expect and turns their return value into (status, headers, body).

Standard library only, like the bootstrap. The Flask-style request and the stand-ins for the
`functions_framework` and `flask` modules are written by hand, as small as the documented surface the
platforms' handlers use: neither package is in the sandbox unless the function installs it.
"""

import contextvars
import json
import sys
import types
from importlib.machinery import ModuleSpec
from urllib.parse import parse_qsl, unquote

# --- a Flask-style request (Google Cloud Functions, Fission) ----------------------------------------------


class Headers(dict):
    """Request headers: a dict with lower-case names, read in any case, as Werkzeug's EnvironHeaders are."""

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def get(self, name, default=None, type=None):  # noqa: A002 - Werkzeug's signature
        value = dict.get(self, name.lower(), default)
        return type(value) if type is not None and value is not None else value

    def __contains__(self, name):
        return dict.__contains__(self, str(name).lower())


class MultiDict(dict):
    """Query and form fields: `[key]` and `get` give the first value, `getlist` all of them, as Werkzeug's."""

    def __init__(self, pairs=()):
        super().__init__()
        self._lists = {}
        for key, value in pairs:
            self._lists.setdefault(key, []).append(value)
            if not dict.__contains__(self, key):
                dict.__setitem__(self, key, value)

    def getlist(self, key, type=None):  # noqa: A002
        values = self._lists.get(key, [])
        return [type(v) for v in values] if type is not None else list(values)

    def get(self, key, default=None, type=None):  # noqa: A002
        value = dict.get(self, key, default)
        return type(value) if type is not None and value is not None and key in self else value

    def to_dict(self, flat=True):
        return dict(self) if flat else {k: list(v) for k, v in self._lists.items()}


class Request:
    """The parts of Flask's `request` that functions read: method, path, args, headers, data, get_json()..."""

    def __init__(self, meta, body, header_dict):
        self.method = meta["method"]
        self.path = meta["path"]
        self.query_string = meta["rawQuery"].encode()
        self.full_path = f"{self.path}?{meta['rawQuery']}"
        self.headers = Headers(header_dict)
        self.host = self.headers.get("host", "localhost")
        self.url = f"http://{self.host}{self.path}" + (f"?{meta['rawQuery']}" if meta["rawQuery"] else "")
        self.base_url = f"http://{self.host}{self.path}"
        self.scheme = "http"
        self.remote_addr = meta["sourceIp"]
        self.args = MultiDict(parse_qsl(meta["rawQuery"], keep_blank_values=True))
        self.data = body
        self.content_type = self.headers.get("content-type")
        self.mimetype = (self.content_type or "").split(";")[0].strip().lower()
        self.content_length = len(body)
        self.form = MultiDict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)) if self.mimetype == "application/x-www-form-urlencoded" else MultiDict()
        self.values = MultiDict(list(self.args.items()) + list(self.form.items()))
        cookie = self.headers.get("cookie", "")
        self.cookies = dict(part.strip().split("=", 1) for part in cookie.split(";") if "=" in part)

    @property
    def is_json(self):
        return self.mimetype == "application/json" or (self.mimetype.startswith("application/") and self.mimetype.endswith("+json"))

    @property
    def json(self):
        return self.get_json()

    def get_data(self, cache=True, as_text=False, parse_form_data=False):  # noqa: ARG002 - Flask's signature
        return self.data.decode("utf-8", "replace") if as_text else self.data

    def get_json(self, force=False, silent=False, cache=True):  # noqa: ARG002
        if not (force or self.is_json):
            if silent:
                return None
            raise BadRequest("the request's content type is not application/json")
        try:
            return json.loads(self.data) if self.data else None
        except ValueError as error:
            if silent:
                return None
            raise BadRequest(f"the body is not JSON: {error}") from None


class BadRequest(Exception):
    """Werkzeug's 400, as get_json raises it; answered 400."""

    code = 400


# --- Flask's ways of returning a response ---------------------------------------------------------------


def flask_response(value):
    """A view's return value as Flask makes a response: text (HTML by default), bytes, a dict or list as JSON,
    a `(body, status)`, `(body, headers)` or `(body, status, headers)` tuple, or a Response object."""
    status, headers = 200, {}
    if isinstance(value, tuple):
        if len(value) == 3:
            value, status, headers = value
        elif len(value) == 2:
            value, second = value
            if isinstance(second, (dict, list)):
                headers = second
            else:
                status = second
    headers = {str(k).lower(): str(v) for k, v in (headers.items() if isinstance(headers, dict) else headers)}
    if hasattr(value, "status_code") and hasattr(value, "get_data"):
        # A Flask/Werkzeug Response (jsonify, make_response) from a function that installs Flask.
        merged = {str(k).lower(): str(v) for k, v in value.headers.items()}
        merged.update(headers)
        return int(value.status_code if status == 200 else status), merged, value.get_data()
    if isinstance(value, (dict, list)):
        headers.setdefault("content-type", "application/json")
        body = (json.dumps(value, default=str) + "\n").encode()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        headers.setdefault("content-type", "text/html; charset=utf-8")
        body = bytes(value)
    elif value is None:
        body = b""
    else:
        headers.setdefault("content-type", "text/html; charset=utf-8")
        body = str(value).encode()
    if isinstance(status, str):
        status = int(status.split()[0])
    return int(status), headers, body


class Response:
    """A stand-in for flask.Response: `Response(body, status=200, headers=None, mimetype=None, content_type=None)`."""

    def __init__(self, response=b"", status=200, headers=None, mimetype=None, content_type=None):
        self.status_code = int(status)
        self.headers = dict(headers or {})
        if content_type or mimetype:
            self.headers["content-type"] = content_type or mimetype
        self._body = response.encode() if isinstance(response, str) else bytes(response)

    def get_data(self, as_text=False):
        return self._body.decode() if as_text else self._body


def jsonify(*args, **kwargs):
    value = args[0] if len(args) == 1 and not kwargs else (list(args) if args else kwargs)
    return Response(json.dumps(value, default=str) + "\n", headers={"content-type": "application/json"})


def make_response(*args):
    status, headers, body = flask_response(args[0] if len(args) == 1 else tuple(args))
    return Response(body, status, headers)


current_request = contextvars.ContextVar("hearth_flask_request", default=None)


class RequestProxy:
    """`flask.request` for Fission's `main()`: the request of the invocation running in this context."""

    def __getattr__(self, name):
        request = current_request.get()
        if request is None:
            raise RuntimeError("Working outside of request context.")
        return getattr(request, name)


# A Flask app for a function that installs Flask itself: its `flask.request` needs a real request context.
real_flask_app = None


def install_flask_stand_in():
    """`from flask import request` works without Flask: Fission's Python functions read the request so."""
    global real_flask_app
    try:
        import flask

        real_flask_app = flask.Flask("hearth")
        # test_request_context imports flask.testing (werkzeug.test, click.testing) at its first call: load
        # it at bind, a cold start's business, rather than in the first invocation.
        import flask.testing  # noqa: F401

        return False
    except ImportError:
        pass
    module = types.ModuleType("flask")
    module.request = RequestProxy()
    module.Response = Response
    module.jsonify = jsonify
    module.make_response = make_response
    module.__hearth_stand_in__ = True
    sys.modules["flask"] = module
    return True


# --- Google Cloud Functions' decorators -----------------------------------------------------------------


def in_flask_context(meta, body, view):
    """Runs `view` in a request context of the real Flask (Fission's own environment runs main() so) and
    returns its answer as a Flask Response."""
    raw = meta["rawHeaders"]
    headers = [(raw[i], raw[i + 1]) for i in range(0, len(raw) - 1, 2)]
    with real_flask_app.test_request_context(
        meta["path"], method=meta["method"], headers=headers, data=body, query_string=meta["rawQuery"]
    ):
        return real_flask_app.make_response(view())


def install_functions_framework_stand_in():
    """`import functions_framework` works without the package: `@functions_framework.http` and
    `@functions_framework.cloud_event` mark the function, which is how the guest recognises it."""
    if FunctionsFrameworkStandIn not in sys.meta_path:
        sys.meta_path.append(FunctionsFrameworkStandIn)


class FunctionsFrameworkStandIn:
    """A finder last on sys.meta_path: `functions_framework` is the stand-in only when no finder before it
    (the function's folder, its dependency layer) has the real package. Trying the real import at bind found
    nothing for most functions only after a walk of all of sys.path and a raised ImportError, in every Python
    function bound under `auto`, whether or not it used the framework (issue 11)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        return ModuleSpec(name, FunctionsFrameworkStandIn) if name == "functions_framework" else None

    @staticmethod
    def create_module(spec):
        module = types.ModuleType(spec.name)

        def mark(kind):
            def decorate(fn):
                fn.__hearth_gcf__ = kind
                return fn

            return decorate

        module.http = mark("http")
        module.cloud_event = mark("cloudevent")
        module.errorhandler = lambda *_a, **_k: (lambda fn: fn)
        return module

    @staticmethod
    def exec_module(module):
        pass


def gcf_kind(fn):
    """'http' or 'cloudevent' for a function registered with the Functions Framework (stand-in or real), else None."""
    kind = getattr(fn, "__hearth_gcf__", None)
    if kind:
        return kind
    try:
        registry = sys.modules.get("functions_framework._function_registry")
        if registry is not None:
            for name, signature in getattr(registry, "REGISTRY_MAP", {}).items():
                if name == getattr(fn, "__name__", None):
                    return "cloudevent" if signature == "cloudevent" else "http"
    except Exception:  # noqa: BLE001 - a different version of the real package: not recognised
        pass
    return None


class CloudEvent(dict):
    """The CloudEvent a `@cloud_event` function gets: attributes by `event["type"]`, the payload as `.data`."""

    @property
    def data(self):
        return self.get("data")

    def get_attributes(self):
        return {k: v for k, v in self.items() if k != "data"}

    def get_data(self):
        return self.get("data")


def cloud_event_of(meta, body, header_dict, decode_body, cloud_event):
    if meta.get("event"):
        return CloudEvent(cloud_event(meta["event"], body))
    content_type = str(header_dict.get("content-type", "")).lower()
    if content_type.startswith("application/cloudevents+json"):
        return CloudEvent(json.loads(body))
    event = CloudEvent({name[3:]: unquote(value) for name, value in header_dict.items() if name.startswith("ce-")})
    if "content-type" in header_dict:
        event["datacontenttype"] = header_dict["content-type"]
    event["data"] = decode_body(body, content_type or "application/json")
    return event


# --- OpenFaaS -------------------------------------------------------------------------------------------


class OpenFaasEvent:
    """python3-http's event: body (bytes), headers, method, query, path."""

    def __init__(self, meta, body, header_dict):
        self.body = body
        self.headers = Headers(header_dict)
        self.method = meta["method"]
        self.query = MultiDict(parse_qsl(meta["rawQuery"], keep_blank_values=True))
        self.path = meta["path"]


class OpenFaasContext:
    def __init__(self):
        import socket

        self.hostname = socket.gethostname()


def openfaas_http_response(value):
    """python3-http's `{statusCode, body, headers}`: a dict body is JSON, anything else its text."""
    if value is None:
        return 200, {}, b""
    headers = {str(k).lower(): str(v) for k, v in (value.get("headers") or {}).items()}
    body = value.get("body", "")
    if isinstance(body, (dict, list)):
        headers.setdefault("content-type", "application/json")
        data = (json.dumps(body) + "\n").encode()
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    else:
        data = str(body).encode()
    headers.setdefault("content-type", "text/html; charset=utf-8")
    return int(value.get("statusCode", 200)), headers, data


def netlify_event(meta, body, header_dict, is_textual):
    """Netlify Functions v1: Lambda's REST-like event whose query objects are never null."""
    multi_headers = {}
    raw = meta["rawHeaders"]
    for i in range(0, len(raw) - 1, 2):
        multi_headers.setdefault(raw[i].lower(), []).append(raw[i + 1])
    query, multi_query = {}, {}
    for key, value in parse_qsl(meta["rawQuery"], keep_blank_values=True):
        query[key] = f"{query[key]}, {value}" if key in query else value
        multi_query.setdefault(key, []).append(value)
    import base64

    textual = not body or is_textual(str(header_dict.get("content-type", "")).lower())
    host = header_dict.get("host", "localhost")
    return {
        "path": meta["path"],
        "httpMethod": meta["method"],
        "headers": header_dict,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "body": (body.decode("utf-8", "replace") if textual else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": not textual,
        "rawUrl": f"http://{host}{meta['path']}" + (f"?{meta['rawQuery']}" if meta["rawQuery"] else ""),
        "rawQuery": meta["rawQuery"],
    }


def alb_event(meta, body, header_dict, is_textual):
    """An ALB target's event (multi-value headers off): the query as sent (ALB does not decode it), {} without one."""
    import base64

    query = {}
    for pair in meta["rawQuery"].split("&"):
        if pair:
            key, _, value = pair.partition("=")
            query[key] = value
    textual = not body or is_textual(str(header_dict.get("content-type", "")).lower())
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:hearth:000000000000:targetgroup/hearth/0"}},
        "httpMethod": meta["method"],
        "path": meta["path"],
        "queryStringParameters": query,
        "headers": header_dict,
        "body": body.decode("utf-8", "replace") if textual else base64.b64encode(body).decode(),
        "isBase64Encoded": not textual,
    }
