"""A multipart/form-data body, already read into memory, split into its fields with python-multipart's parser.

Starlette's form parser, used before, spools every file part into a temporary file and wraps it in an
UploadFile, made for bodies streamed from the network; a classify body is read whole first and capped
(service.http.bodies), so its parts are kept as bytes. The rules are Starlette's: a part with a filename is a
file; every part needs a name; the counts of files and fields and the size of a text field are capped; the
charset comes from the Content-Type's parameter. Half the parsing time of the Starlette path, measured in
docs/performance.md ("The front end's own cost per request").
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_TEXT_FIELD_BYTES = 1024 * 1024  # Starlette's cap on a part that is not a file


class MultipartError(ValueError):
    """The body is not a multipart form that can be read; the message says why."""


@dataclass(frozen=True)
class FilePart:
    filename: str
    data: bytes


@dataclass
class _Part:
    disposition: bytes = b""
    name: str = ""
    filename: str | None = None  # None: a text field
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


def _decode(value: bytes, charset: str) -> str:
    try:
        return value.decode(charset)
    except UnicodeDecodeError:
        return value.decode("latin-1")


class _Collector:
    """python-multipart's callbacks: the parts as (name, text or FilePart), in order."""

    def __init__(self, charset: str, max_files: int, max_fields: int) -> None:
        self.charset, self.max_files, self.max_fields = charset, max_files, max_fields
        self.items: list[tuple[str, str | FilePart]] = []
        self._part = _Part()
        self._header_name = self._header_value = b""
        self._files = self._fields = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._part.disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        part = self._part
        _, options = parse_options_header(part.disposition)
        if b"name" not in options:
            raise MultipartError('The Content-Disposition header field "name" must be provided.')
        part.name = _decode(options[b"name"], self.charset)
        if b"filename" in options:
            self._files += 1
            if self._files > self.max_files:
                raise MultipartError(f"Too many files. Maximum number of files is {self.max_files}.")
            part.filename = _decode(options[b"filename"], self.charset)
        else:
            self._fields += 1
            if self._fields > self.max_fields:
                raise MultipartError(f"Too many fields. Maximum number of fields is {self.max_fields}.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        part.size += end - start
        if part.filename is None and part.size > MAX_TEXT_FIELD_BYTES:
            raise MultipartError(f"Part exceeded maximum size of {MAX_TEXT_FIELD_BYTES // 1024}KB.")
        part.chunks.append(data[start:end])

    def on_part_end(self) -> None:
        part = self._part
        data = b"".join(part.chunks)
        value = _decode(data, self.charset) if part.filename is None else FilePart(part.filename, data)
        self.items.append((part.name, value))


def parse_form(content_type: str, body: bytes, max_files: int, max_fields: int) -> list[tuple[str, str | FilePart]]:
    """The fields of a multipart/form-data `body` whose Content-Type header is `content_type`, in order
    (MultipartError when it cannot be read)."""
    _, params = parse_options_header(content_type)
    charset = params.get(b"charset", b"utf-8")
    try:
        charset_name = codecs.lookup(charset.decode("latin-1")).name
    except LookupError:
        charset_name = "latin-1"
    if b"boundary" not in params:
        raise MultipartError("Missing boundary in multipart.")
    collector = _Collector(charset_name, max_files, max_fields)
    try:
        parser = MultipartParser(params[b"boundary"], collector.callbacks())  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as err:
        raise MultipartError("Invalid multipart data.") from err
    return collector.items
