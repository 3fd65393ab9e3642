"""Run configuration: one TOML file with a table per stage ([run], [generate], [embed], [build], [model_check]).
A table this code does not know is refused: a misspelt `[bulid]` would otherwise be ignored silently."""

import tomllib
from pathlib import Path

from .errors import UserError


TABLES = ("run", "generate", "embed", "build", "model_check")


def load_config(path) -> dict:
    """The whole TOML document; a missing or malformed file, or an unknown table, is a user error naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: configuration file not found")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(document) - set(TABLES))
    if unknown:
        raise UserError(f"{path}: unknown table(s) {', '.join(f'[{t}]' for t in unknown)} "
                        f"(known: {', '.join(f'[{t}]' for t in TABLES)})")
    return document


def load_table(path, table: str, allowed=None) -> dict:
    """One stage's table; keys outside `allowed` are an error naming them."""
    values = load_config(path).get(table, {})
    if not isinstance(values, dict):
        raise UserError(f"{path}: [{table}] must be a table")
    unknown = sorted(set(values) - set(allowed)) if allowed is not None else []
    if unknown:
        raise UserError(f"{path}: unknown key(s) in [{table}]: {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(allowed))})")
    return values
