"""Reading a request body under a size limit, and form fields from the buffered bytes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.errors import BadRequest, PayloadTooLarge
from app.sources import Delivery


async def read_body(request: Request, limit: int) -> bytes:
    """The raw bytes, refused with 413 as soon as they pass `limit` (uvicorn itself sets no limit)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _collect(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Form fields as a mapping; a repeated name (checkboxes) becomes a list, built in linear time."""
    collected: dict[str, list[Any]] = {}
    for name, value in pairs:
        if isinstance(value, UploadFile):
            continue  # files are not events; the field names stay out of the payload
        collected.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in collected.items()}


async def parse_form(headers: Headers, body: bytes, media_type: str, *, max_fields: int) -> dict[str, Any] | None:
    if media_type == "application/x-www-form-urlencoded":
        # Counted before anything is split, so an oversized form costs one pass over its bytes.
        if body.count(b"&") + 1 > max_fields:
            raise BadRequest(f"the form has too many fields: at most {max_fields} are accepted")
        try:
            return _collect(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"the form body cannot be parsed: {exc}") from exc
    if media_type == "multipart/form-data":

        async def stream() -> AsyncGenerator[bytes, None]:
            yield body

        try:
            form = await MultiPartParser(headers, stream(), max_files=max_fields, max_fields=max_fields).parse()
        except MultiPartException as exc:
            raise BadRequest(f"the multipart body cannot be parsed: {exc.message}") from exc
        try:
            return _collect(list(form.multi_items()))
        finally:
            await form.close()
    return None


# Source types whose senders post forms; no other source parses a form body (before or after its check).
FORM_SOURCES = frozenset({"form", "gumroad", "thrivecart"})


async def build_delivery(
    source_type: str, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], *, max_fields: int = 1000
) -> Delivery:
    """A Delivery from the parts of a request; form fields are parsed only for form sources."""
    lowered = {k.lower(): v for k, v in headers.items()}
    delivery = Delivery(headers=lowered, body=body, query=dict(query))
    if source_type in FORM_SOURCES:
        form = await parse_form(Headers(headers=lowered), body, delivery.media_type, max_fields=max_fields)
        if form is not None:
            delivery = Delivery(headers=lowered, body=body, query=dict(query), form=form)
    return delivery
