"""reports/formats.py: every format parses back to the rows it was given."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest

from homa_server.reports.formats import (
    EXTENSIONS,
    MIME_TYPES,
    chunked,
    format_name,
    render_rows,
    render_sections,
)

COLUMNS = ["name", "count", "ok", "note"]
ROWS = [
    {"name": "a,b", "count": 3, "ok": True, "note": 'say "hi"\nthen <go> & stop'},
    {"name": "é☃", "count": 0, "ok": False, "note": None},
]


def test_json_is_an_array_of_row_objects() -> None:
    assert json.loads(render_rows(ROWS, COLUMNS, "json")) == [
        {"name": "a,b", "count": 3, "ok": True, "note": 'say "hi"\nthen <go> & stop'},
        {"name": "é☃", "count": 0, "ok": False, "note": None},
    ]


def test_csv_is_rfc4180_with_header_first() -> None:
    data = render_rows(ROWS, COLUMNS, "csv").decode()
    assert data.startswith("name,count,ok,note\r\n")
    assert '"say ""hi""' in data
    parsed = list(csv.reader(io.StringIO(data, newline="")))
    assert parsed == [
        COLUMNS,
        ["a,b", "3", "true", 'say "hi"\nthen <go> & stop'],
        ["é☃", "0", "false", ""],
    ]


def test_xml_is_well_formed_and_escaped() -> None:
    data = render_rows(ROWS, COLUMNS, "xml", root="usage", item="row")
    root = ET.fromstring(data)
    assert root.tag == "usage"
    rows = [{child.tag: child.text or "" for child in row} for row in root.findall("row")]
    assert rows[0]["note"] == 'say "hi"\nthen <go> & stop'
    assert rows[1] == {"name": "é☃", "count": "0", "ok": "false", "note": ""}


def test_xml_drops_characters_xml_cannot_carry() -> None:
    root = ET.fromstring(render_rows([{"v": "a\x00b\x1fc"}], ["v"], "xml"))
    assert root.findtext("row/v") == "abc"


def test_empty_rows() -> None:
    assert json.loads(render_rows([], COLUMNS, "json")) == []
    assert render_rows([], COLUMNS, "csv") == b"name,count,ok,note\r\n"
    assert ET.fromstring(render_rows([], COLUMNS, "xml")).findall("row") == []


def test_format_names_and_enum_values() -> None:
    assert [format_name(v) for v in (0, 1, 2, 3)] == ["json", "json", "csv", "xml"]
    assert format_name("EXPORT_FORMAT_CSV") == "csv"
    assert MIME_TYPES["csv"] == "text/csv"
    assert EXTENSIONS["xml"] == "xml"
    with pytest.raises(ValueError):
        format_name("yaml")
    with pytest.raises(ValueError):
        render_rows(ROWS, ["bad name"], "xml")


def test_sections() -> None:
    sections = [("access", ["who"], [{"who": "k1"}]), ("failures", ["n"], [{"n": 2}])]
    assert json.loads(render_sections(sections, "json")) == {
        "access": [{"who": "k1"}],
        "failures": [{"n": 2}],
    }
    assert (
        render_sections(sections, "csv").decode() == "# access\r\nwho\r\nk1\r\n\r\n# failures\r\nn\r\n2\r\n"
    )
    root = ET.fromstring(render_sections(sections, "xml", root="report"))
    assert root.findtext("access/row/who") == "k1"
    assert root.findtext("failures/row/n") == "2"


def test_chunked() -> None:
    assert chunked(b"abcde", 2) == [b"ab", b"cd", b"e"]
    assert chunked(b"", 2) == [b""]
