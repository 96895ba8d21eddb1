"""Text fields never carry NUL (U+0000): PostgreSQL `text` cannot store it, so a request holding
one would fail at its INSERT or query as an INTERNAL error. Every server refuses it at the door
(ErrorInterceptor) with INVALID_ARGUMENT naming the field, whatever service and RPC: one rule,
not a check per field that a new field could miss. `bytes` fields (images, tensors) are not text
and are never inspected."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def nul_field(message: Message, prefix: str = "") -> str | None:
    """The path of the first string field (nested, repeated and map fields included) that holds a
    NUL character, or None. Only fields that are set are visited."""
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == _STRING:
            if field.is_repeated:
                if any("\x00" in v for v in value):
                    return name
            elif "\x00" in value:
                return name
        elif field.type == _MESSAGE:
            if field.message_type.GetOptions().map_entry:
                key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
                for key, item in value.items():
                    if key_field.type == _STRING and "\x00" in key:
                        return f"{name}[key]"
                    if value_field.type == _STRING and "\x00" in item:
                        return f"{name}[{key!r}]"
                    if value_field.type == _MESSAGE and (found := nul_field(item, f"{name}[{key!r}].")):
                        return found
            elif field.is_repeated:
                for i, item in enumerate(value):
                    if found := nul_field(item, f"{name}[{i}]."):
                        return found
            elif found := nul_field(value, name + "."):
                return found
    return None
