"""CSV cells a spreadsheet never runs as a formula (the prediction and the audit exports)."""

from __future__ import annotations

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice, Sheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """`value`, with a leading apostrophe when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        return "'" + value
    return value
