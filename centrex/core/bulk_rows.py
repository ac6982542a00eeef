"""Rows of a bulk import (CSV or a JSON array), each checked against the API's own input model:
one set of rules whether a line comes alone or with 99,999 others.

Pure: bytes in, checked rows or a report naming each bad row and field out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

MAX_ROWS = 100_000
#: A report names at most this many errors (and counts them all): enough to fix a file by.
MAX_ERRORS_REPORTED = 1_000

Row = TypeVar("Row", bound=BaseModel)


@dataclass(frozen=True)
class RowError:
    row: int  # 1 = the first data row (a CSV's header is row 0); 0: the file itself
    field: str | None
    msg: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "msg": self.msg}


@dataclass
class CheckedRows(Generic[Row]):
    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0

    def refuse(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append(error)


class FileRefused(ValueError):
    """The file as a whole cannot be read: no row is checked."""


def is_csv(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/csv"


def read_records(body: bytes, content_type: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The records of a CSV (a header row naming ``columns``, in any order, some omitted) or
    of a JSON array of objects."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")  # a spreadsheet's BOM is not part of the first column
    except UnicodeDecodeError as exc:
        raise FileRefused(f"not UTF-8 (byte {exc.start})") from None
    if kind == "text/csv":
        return _csv_records(text, columns)
    if kind == "application/json":
        return _json_records(text)
    raise FileRefused(f"content type {kind!r}: text/csv or application/json")


def _csv_records(text: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise FileRefused("empty: a header row naming the columns is needed") from None
    except csv.Error as exc:
        raise FileRefused(f"header: {exc}") from None
    header = [name.strip() for name in header]
    if unknown := [name for name in header if name not in columns]:
        raise FileRefused(f"unknown column {unknown[0]!r}; columns: {', '.join(columns)}")
    if len(set(header)) != len(header):
        raise FileRefused("a column is named twice")
    records = []
    try:
        for values in reader:
            if len(records) >= MAX_ROWS:
                raise FileRefused(f"more than {MAX_ROWS} rows")
            if not any(v.strip() for v in values):
                continue  # a blank line, as spreadsheets leave at the end
            if len(values) != len(header):
                records.append({"__shape__": f"{len(values)} cells for {len(header)} columns"})
                continue
            # An empty cell is an omitted value (the default), as in a form.
            records.append({k: v for k, v in zip(header, values, strict=True) if v != ""})
    except csv.Error as exc:
        raise FileRefused(f"row {len(records) + 1}: {exc}") from None
    return records


def _json_records(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileRefused(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, list):
        raise FileRefused("a JSON array of objects is expected")
    if len(data) > MAX_ROWS:
        raise FileRefused(f"more than {MAX_ROWS} rows")
    return [r if isinstance(r, dict) else {"__shape__": "not an object"} for r in data]


def check_rows(
    records: Iterable[dict[str, Any]], model: type[Row], *, text_cells: bool = False
) -> CheckedRows[Row]:
    """Every record against ``model``: the rows, or every error (row and field). With
    ``text_cells`` (a CSV's cells are all text) "2" is read as the number 2, as a JSON body's
    "2" is not (centrex.api.fields)."""
    context = {"text_cells": text_cells}
    checked: CheckedRows[Row] = CheckedRows()
    for number, record in enumerate(records, start=1):
        if "__shape__" in record:
            checked.refuse(RowError(number, None, record["__shape__"]))
            continue
        try:
            checked.rows.append(model.model_validate(record, context=context))
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                name = ".".join(str(part) for part in error["loc"]) or None
                checked.refuse(RowError(number, name, error["msg"]))
    if checked.error_count == 0 and not checked.rows:
        checked.refuse(RowError(0, None, "no rows"))
    return checked
