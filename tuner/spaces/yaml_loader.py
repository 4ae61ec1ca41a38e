"""YAML as a space file needs it: duplicate keys are errors, YAML 1.2 floats
(1e-5) are numbers, and every failure is one `SpaceError` line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tuner.errors import SpaceError


def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that rejects duplicate keys and reads YAML 1.2 floats
        such as 1e-5 (YAML 1.1 reads them as strings)."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:
                continue
            if dup:
                m = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", m)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                           construct_mapping)
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
                      |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                      |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
                      |[-+]?\.(?:inf|Inf|INF)
                      |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _read_yaml(path: Path, text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(str(x) for x in (e.problem, e.context) if x)
        what = " ".join(what.split())
        raise SpaceError(f"{path}: {where}invalid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        # PyYAML's constructors fail this way on explicit tags (`!!int abc`).
        raise SpaceError(f"{path}: invalid YAML value: {' '.join(str(e).split()) or type(e).__name__}; "
                         "remove the !!tag or fix the value") from None
