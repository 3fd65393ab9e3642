"""The base of every configuration table: a pydantic model that refuses unknown keys and wrong types, and
turns pydantic's report into one line that names the table and the key."""

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserError

_TYPE_TAGS = {"int", "str", "float", "bool", "list", "dict", "none"}


class Table(BaseModel):
    """One TOML table. Values are checked strictly: `seed = "0"` is refused, not silently converted."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, protected_namespaces=())


def describe_error(where: str, error: ValidationError) -> str:
    """`where: key: message (got value)` for each problem, on one line."""
    problems, seen = [], set()
    for item in error.errors(include_url=False):
        # a union reports each member's complaint under a location like ('sample', 'int'): keep the key only
        location = ".".join(str(part) for part in item["loc"][:1] + tuple(
            p for p in item["loc"][1:] if isinstance(p, int) or p.isidentifier() and p not in _TYPE_TAGS))
        if location in seen and item["type"] in ("literal_error", "int_type", "string_type"):
            continue
        seen.add(location)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        got = "" if item["type"] in ("missing", "extra_forbidden") else f" (got {_short(item['input'])})"
        problems.append(f"{location}: {message}{got}" if location else f"{message}{got}")
    return f"{where}: {'; '.join(problems)}"


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def parse_table(model: type[Table], values: dict, where: str) -> Table:
    """The table's model from a dict of TOML values; any problem is one UserError line."""
    if not isinstance(values, dict):
        raise UserError(f"{where} must be a table")
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise UserError(describe_error(where, e)) from None
