"""Finding space files (a path or the name of a shipped space) and reading
them into a validated `Space`."""

from __future__ import annotations

import difflib
from pathlib import Path

from tuner.errors import SpaceError
from tuner.spaces.space import Space
from tuner.spaces.validator import _Validator
from tuner.spaces.yaml_loader import _read_yaml

#: The shipped spaces (``<repo>/search_spaces``).
def _shipped_dir() -> Path:
    """The repo's search_spaces/ in a checkout or editable install; a wheel
    installs them under <prefix>/share/flower-tuner/search_spaces."""
    import sys

    here = Path(__file__).resolve().parent.parent.parent / "search_spaces"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "flower-tuner" / "search_spaces"


SHIPPED_DIR = _shipped_dir()


def _shipped() -> dict[str, Path]:
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def list_spaces() -> list[tuple[str, str]]:
    """(name, description) of each shipped space, sorted by name."""
    out = []
    for name, path in sorted(_shipped().items()):
        try:
            doc = _read_yaml(path, path.read_text(encoding="utf-8"))
            desc = doc.get("description", "") if isinstance(doc, dict) else ""
        except (OSError, SpaceError) as e:
            desc = f"(unreadable: {e})"
        out.append((name, str(desc or "")))
    return out


def resolve(name_or_path: str | Path) -> Path:
    """An existing file, or the name of a shipped space."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise SpaceError(f"{text}: is a directory; give a .yaml file or a space name")
    shipped = _shipped()
    if text in shipped:
        return shipped[text]
    names = ", ".join(sorted(shipped)) or "(none shipped)"
    if "/" in text or "\\" in text or text.endswith((".yaml", ".yml")):
        raise SpaceError(f"{text}: no such file; give a path to a .yaml file or "
                         f"one of the shipped spaces: {names}")
    close = difflib.get_close_matches(text, list(shipped), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpaceError(f"unknown space {text!r}{hint}: choose one of {names} "
                     f"or give a path to a .yaml file")


def load_space(name_or_path: str | Path) -> Space:
    """Read and validate a space file (a path or a shipped name)."""
    path = resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: cannot read: {e}") from None
    return parse_space(text, path)


def parse_space(text: str, path: Path | str | None = None) -> Space:
    """Validate the YAML `text` of a space; `path` only names it in errors."""
    p = Path(path) if path is not None else None
    where = str(p) if p is not None else "<space>"
    doc = _read_yaml(where, text)  # type: ignore[arg-type]
    try:
        return _Validator(where, p).space(doc, text)
    except RecursionError:
        raise SpaceError(f"{where}: a YAML alias refers to itself (e.g. &a [*a]); write the value out") from None
