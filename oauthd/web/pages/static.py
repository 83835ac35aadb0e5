"""
The pages' static files (the stylesheet, the C{form_post} script), read
once from the package and served from memory.
"""

from __future__ import annotations

from importlib import resources

from twisted.web.iweb import IRequest

_TYPES = {
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
}

FILES: dict[str, tuple[bytes, bytes]] = {
    entry.name: (_TYPES[entry.name[entry.name.rindex("."):]], entry.read_bytes())
    for entry in resources.files(__package__).joinpath("static").iterdir()
    if entry.is_file() and entry.name[entry.name.rfind("."):] in _TYPES
}
"""
Each static file's name, content type and bytes.
"""


def serve(request: IRequest, name: str) -> bytes | None:
    """
    The static file C{name} as the response to C{request}, or C{None} if
    there is none such.
    """
    found = FILES.get(name)
    if found is None:
        return None
    content_type, data = found
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Cache-Control", b"public, max-age=3600")
    request.setHeader(b"Content-Security-Policy", b"default-src 'none'; frame-ancestors 'none'")
    request.setHeader(b"Content-Length", b"%d" % len(data))
    return data
