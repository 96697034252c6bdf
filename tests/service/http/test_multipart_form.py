"""parse_form: a multipart body read whole, split into text fields and file parts by Starlette's rules."""

from __future__ import annotations

import pytest

from elastic_anytime.service.http.multipart_form import MAX_TEXT_FIELD_BYTES, FilePart, MultipartError, parse_form

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
JPEG = b"\xff\xd8\xff\xe0 not really a jpeg \r\n with a CRLF inside \xff\xd9"


def part(disposition: str, value: bytes, content_type: str | None = None) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def test_files_and_text_fields_come_back_in_order() -> None:
    body = form(
        part('form-data; name="budget_ms"', b"12.5"),
        part('form-data; name="image"; filename="cat.jpg"', JPEG, "image/jpeg"),
        part('form-data; name="top_k"', b"3"),
    )
    assert parse_form(CONTENT_TYPE, body, max_files=1, max_fields=4) == [
        ("budget_ms", "12.5"),
        ("image", FilePart("cat.jpg", JPEG)),
        ("top_k", "3"),
    ]


def test_a_part_with_a_filename_is_a_file_even_when_empty() -> None:
    body = form(part('form-data; name="image"; filename=""', b""))
    assert parse_form(CONTENT_TYPE, body, max_files=1, max_fields=4) == [("image", FilePart("", b""))]


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", form(part('form-data; name="a"', b"1")), "Missing boundary"),
        (CONTENT_TYPE, form(part("form-data", b"1")), '"name" must be provided'),
        (
            CONTENT_TYPE,
            form(part('form-data; name="a"; filename="x"', b"1"), part('form-data; name="b"; filename="y"', b"2")),
            "Too many files",
        ),
        (CONTENT_TYPE, form(*(part(f'form-data; name="f{i}"', b"1") for i in range(3))), "Too many fields"),
        (CONTENT_TYPE, form(part('form-data; name="a"', b"x" * (MAX_TEXT_FIELD_BYTES + 1))), "maximum size"),
        (CONTENT_TYPE, b"--b0undary\r\nthis is no header line at all\r\n\r\n", "Invalid multipart data"),
    ],
)
def test_a_body_that_breaks_a_rule_says_which(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse_form(content_type, body, max_files=1, max_fields=2)


def test_text_in_another_charset_is_decoded_with_it_and_bad_bytes_fall_back_to_latin_1() -> None:
    body = form(part('form-data; name="a"', "é".encode("utf-16")), part('form-data; name="b"', b"\xff"))
    items = parse_form(f"{CONTENT_TYPE}; charset=utf-16", body, max_files=1, max_fields=4)
    assert items[0] == ("a", "é")
    assert items[1] == ("b", "ÿ")
