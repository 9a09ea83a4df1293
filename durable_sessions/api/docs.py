"""The OpenAPI schema and a reference page generated from it.

The page is plain server-rendered HTML with an inline style sheet: no script, no CDN and
no static files, so it works offline and in a host project that installs nothing more
than this app. Every text of the schema is escaped, and the page sends its own
Content-Security-Policy: no script at all, and only its own style sheet (by its hash).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.views import View
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.settings import patched_settings
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from durable_sessions.api.errors import exception_handler
from durable_sessions.api.schema import SCHEMA_SETTINGS, session_stream_paths

# drf-spectacular applies custom settings by patching its global settings object.
_generating = threading.Lock()

METHODS = ("get", "post", "put", "patch", "delete")


def build_schema(request: Request | None) -> dict[str, Any]:
    """The OpenAPI 3 document of the API endpoints, with the host's URL prefix."""
    with _generating, patched_settings({**SCHEMA_SETTINGS, "APPEND_PATHS": session_stream_paths()}):
        return SchemaGenerator().get_schema(request=request, public=True)


class SchemaView(APIView):
    """The OpenAPI 3 schema: JSON by default, YAML with ``?format=yaml``."""

    schema = None  # not an endpoint of the schema itself
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []
    versioning_class = None
    renderer_classes = [
        OpenApiJsonRenderer,
        OpenApiJsonRenderer2,
        OpenApiYamlRenderer,
        OpenApiYamlRenderer2,
    ]

    def get_exception_handler(self) -> Any:
        return exception_handler

    def get(self, request: Request) -> Response:
        return Response(build_schema(request))


# --- the reference page ---------------------------------------------------------------------

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 2rem;
color:#1d232a}
h1 small{font-weight:normal;color:#66707a;font-size:.6em}
h2{border-bottom:2px solid #d8dde2;margin-top:2.5rem}
article{border:1px solid #d8dde2;border-radius:6px;padding:.2rem 1rem 1rem;margin:1rem 0}
h3 code,td code,p code{background:#f1f3f5;padding:0 .25em;border-radius:3px}
.method{display:inline-block;min-width:4em;text-align:center;border-radius:3px;color:#fff;
font-size:.8em;padding:.1em .4em;margin-right:.5em;background:#3b6fb6}
.post{background:#2f8a4c}.delete{background:#b63b3b}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{text-align:left;border-bottom:1px solid #e6e9ec;padding:.25rem .5rem;vertical-align:top}
th{font-weight:600;color:#4b545c}nav ul{columns:2}
"""


def _text(value: Any) -> SafeString:
    """Escaped text in which `backticks` become code."""
    escaped = str(escape(value or ""))
    return mark_safe(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any] | None) -> SafeString:
    """A short description of a JSON schema: a type, or a link to a component."""
    if not schema:
        return mark_safe("any")
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return format_html('<a href="#schema-{}">{}</a>', name, name)
    for combiner in ("allOf", "oneOf", "anyOf"):
        if combiner in schema:
            parts = [_type(part) for part in schema[combiner]]
            return mark_safe(" | ".join(parts))
    if "enum" in schema:
        values = ", ".join(str(v) for v in schema["enum"] if v is not None)
        return format_html("one of <code>{}</code>", values)
    kind = schema.get("type", "object")
    if kind == "array":
        out = format_html("array of {}", _type(schema.get("items")))
    elif schema.get("format"):
        out = format_html("{} ({})", kind, schema["format"])
    else:
        out = format_html("{}", kind)
    if schema.get("nullable"):
        out = format_html("{} or null", out)
    return out


def _properties(schema: dict[str, Any]) -> SafeString:
    required = set(schema.get("required", ()))
    rows = format_html_join(
        "",
        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (name, _type(prop), "yes" if name in required else "", _text(prop.get("description")))
            for name, prop in schema.get("properties", {}).items()
        ),
    )
    return format_html(
        "<table><tr><th>field</th><th>type</th><th>required</th><th></th></tr>{}</table>", rows
    )


def _content_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    for media in body.get("content", {}).values():
        return media.get("schema")
    return None


def _operation(path: str, method: str, op: dict[str, Any]) -> SafeString:
    parts = [
        format_html(
            '<h3><span class="method {}">{}</span><code>{}</code></h3><p><b>{}</b></p><p>{}</p>',
            method,
            method.upper(),
            path,
            op.get("summary", ""),
            _text(op.get("description")),
        )
    ]
    params = op.get("parameters", [])
    if params:
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    p["name"],
                    p["in"],
                    _type(p.get("schema")),
                    "yes" if p.get("required") else "",
                    _text(p.get("description")),
                )
                for p in params
            ),
        )
        parts.append(
            format_html(
                "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th>"
                "<th>required</th><th></th></tr>{}</table>",
                rows,
            )
        )
    if "requestBody" in op:
        parts.append(
            format_html("<h4>Body</h4><p>{}</p>", _type(_content_schema(op["requestBody"])))
        )
    responses = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (code, _type(_content_schema(resp)), _text(resp.get("description")))
            for code, resp in op.get("responses", {}).items()
        ),
    )
    parts.append(format_html("<h4>Responses</h4><table>{}</table>", responses))
    security = sorted({name for req in op.get("security", []) for name in req} or {"none"})
    parts.append(format_html("<p>Authentication: {}</p>", ", ".join(security)))
    return format_html(
        '<article id="{}">{}</article>',
        op.get("operationId", ""),
        mark_safe("".join(parts)),
    )


def render_page(schema: dict[str, Any], schema_url: str) -> str:
    """The reference page of ``schema`` (an OpenAPI 3 document)."""
    info = schema.get("info", {})
    by_tag: dict[str, list[SafeString]] = {}
    index: list[tuple[str, str, str, str]] = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            tag = (op.get("tags") or ["api"])[0]
            by_tag.setdefault(tag, []).append(_operation(path, method, op))
            index.append((op.get("operationId", ""), method.upper(), path, op.get("summary", "")))
    sections = format_html_join(
        "",
        "<h2>{}</h2>{}",
        ((tag, mark_safe("".join(ops))) for tag, ops in by_tag.items()),
    )
    components = format_html_join(
        "",
        '<h3 id="schema-{}">{}</h3>{}',
        (
            (name, name, _properties(comp) if "properties" in comp else _type(comp))
            for name, comp in schema.get("components", {}).get("schemas", {}).items()
        ),
    )
    nav = format_html_join("", '<li><a href="#{}">{} <code>{}</code></a> {}</li>', index)
    return format_html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{}</title><style>{}</style></head><body>"
        "<h1>{} <small>{}</small></h1><p>{}</p>"
        '<p>OpenAPI 3 schema: <a href="{}">JSON</a> · <a href="{}?format=yaml">YAML</a></p>'
        "<nav><ul>{}</ul></nav>{}<h2>Schemas</h2>{}</body></html>",
        info.get("title", "API"),
        mark_safe(STYLE),
        info.get("title", "API"),
        info.get("version", ""),
        _text(info.get("description")),
        schema_url,
        schema_url,
        nav,
        sections,
        components,
    )


# The page runs no script and allows only the style sheet above, named by its hash.
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
PAGE_POLICY = (
    f"default-src 'none'; img-src 'self'; style-src 'sha256-{STYLE_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class DocsView(View):
    """A readable reference of the API, generated from its OpenAPI schema."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        match = request.resolver_match
        namespace = match.namespace if match is not None else ""
        schema_url = reverse(f"{namespace}:api-schema" if namespace else "api-schema")
        page = render_page(build_schema(None), schema_url)
        response = HttpResponse(page, content_type="text/html; charset=utf-8")
        response["Content-Security-Policy"] = PAGE_POLICY
        return response
