"""Document formatters shared by `ExportUsage`, the compliance report and the `homa` CLI.

Contract:
    * `render_rows(rows, columns, fmt, root=, item=)` turns a sequence of row mappings into one
      UTF-8 document (bytes). Only `columns` are written, in that order; a missing key renders as
      empty (CSV/XML) or `null` (JSON).
    * JSON: an array of row objects (`[{...}, ...]`), values kept as JSON types.
    * CSV: RFC 4180 (comma, CRLF line ends, double quotes doubled, fields quoted when needed),
      header row first.
    * XML: `<?xml version="1.0" encoding="UTF-8"?><root><item><col>value</col>...</item></root>`,
      text escaped, characters not allowed in XML 1.0 dropped; `None` renders as an empty element.
      Column names must be valid XML element names (snake_case identifiers are).
    * `fmt` is "json", "csv" or "xml" (case-insensitive) or an `ExportFormat` enum value
      (UNSPECIFIED = JSON); anything else raises ValueError.
    * `MIME_TYPES` / `EXTENSIONS` give the media type and file extension for each format name.
    * `render_sections(sections, fmt, root=)` renders several named tables as one document (the
      compliance report): JSON object of arrays, CSV tables each preceded by "# <section>" and separated
      by a blank line, XML `<root><section_name><item>...</item></section_name></root>`.
Values: bool → true/false, int/float/str as is, datetime → ISO 8601, other objects → str().
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from xml.sax.saxutils import escape

import orjson

JSON: Final = "json"
CSV: Final = "csv"
XML: Final = "xml"

#: IANA media type by format name.
MIME_TYPES: Final[Mapping[str, str]] = {JSON: "application/json", CSV: "text/csv", XML: "application/xml"}
#: File extension (without dot) by format name.
EXTENSIONS: Final[Mapping[str, str]] = {JSON: "json", CSV: "csv", XML: "xml"}

# homa.admin.v1.ExportFormat values (UNSPECIFIED = JSON).
_BY_ENUM: Final[Mapping[int, str]] = {0: JSON, 1: JSON, 2: CSV, 3: XML}
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def format_name(fmt: str | int) -> str:
    """Normalise a format given as a name or an `ExportFormat` value to "json" | "csv" | "xml".

    Raises:
        ValueError: unknown format.
    """
    if isinstance(fmt, int):
        if fmt in _BY_ENUM:
            return _BY_ENUM[fmt]
        raise ValueError(f"unknown export format {fmt}")
    name = fmt.lower().removeprefix("export_format_")
    if name in MIME_TYPES:
        return name
    if name == "unspecified":
        return JSON
    raise ValueError(f"unknown export format {fmt!r}")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _json_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    return [{c: _json_value(row.get(c)) for c in columns} for row in rows]


def _csv_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(row.get(c)) for c in columns])
    return out.getvalue()


def _xml_items(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], item: str) -> str:
    for name in (item, *columns):
        if not _XML_NAME.match(name):
            raise ValueError(f"invalid XML element name {name!r}")
    parts: list[str] = []
    for row in rows:
        parts.append(f"<{item}>")
        for c in columns:
            parts.append(f"<{c}>{escape(_XML_INVALID.sub('', _text(row.get(c))))}</{c}>")
        parts.append(f"</{item}>")
    return "".join(parts)


_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str | int,
    root: str = "usage",
    item: str = "row",
) -> bytes:
    """Render `rows` (only `columns`, in order) as a JSON, CSV or XML document (UTF-8 bytes).

    Raises:
        ValueError: unknown format, or a root/item/column name that is not a valid XML name (XML).
    """
    name = format_name(fmt)
    if name == JSON:
        return orjson.dumps(_json_rows(rows, columns))
    if name == CSV:
        return _csv_table(rows, columns).encode()
    if not _XML_NAME.match(root):
        raise ValueError(f"invalid XML element name {root!r}")
    return f"{_XML_DECL}<{root}>{_xml_items(rows, columns, item)}</{root}>\n".encode()


def render_sections(
    sections: Sequence[tuple[str, Sequence[str], Sequence[Mapping[str, Any]]]],
    fmt: str | int,
    root: str = "report",
    item: str = "row",
) -> bytes:
    """Render several named tables `(section, columns, rows)` as one document (see module docstring).

    Raises:
        ValueError: unknown format or invalid XML names.
    """
    name = format_name(fmt)
    if name == JSON:
        return orjson.dumps({section: _json_rows(rows, columns) for section, columns, rows in sections})
    if name == CSV:
        tables = [f"# {section}\r\n{_csv_table(rows, columns)}" for section, columns, rows in sections]
        return "\r\n".join(tables).encode()
    if not _XML_NAME.match(root):
        raise ValueError(f"invalid XML element name {root!r}")
    body = "".join(
        f"<{section}>{_xml_items(rows, columns, item)}</{section}>"
        for section, columns, rows in sections
        if _XML_NAME.match(section) or _raise_name(section)
    )
    return f"{_XML_DECL}<{root}>{body}</{root}>\n".encode()


def _raise_name(name: str) -> bool:
    raise ValueError(f"invalid XML element name {name!r}")


def chunked(data: bytes, size: int = 1024 * 1024) -> list[bytes]:
    """Split a document into chunks of at most `size` bytes (at least one chunk, maybe empty)."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]
