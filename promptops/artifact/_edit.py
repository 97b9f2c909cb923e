"""Editing a hand-written YAML file in place: only the values that changed, keeping the comments, key order and layout.

Used when promptops writes a new version of a file a person wrote (the optimizer's winner), so
that the git diff shows what changed and nothing else. ruamel.yaml round-trips the file;
values equal before and after are not touched, so keys the author wrote stay even where they
equal a default. ruamel hangs a comment line on the end of the value before it, so when a value
is inserted, removed or replaced, the comment lines that followed it are moved to whatever now
comes before the next key: they stay above the key they describe.
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import re
from typing import Any, Callable, Optional

_ABSENT = object()
_SEQUENCE_ITEM = re.compile(r"^(?P<dash> *)- +(?P<content>\S)")


def edit_yaml_text(text: str, old: dict[str, Any], new: dict[str, Any], *, compact: dict[str, Any],
                   check: Callable[[str], bool] = lambda text: True) -> Optional[str]:
    """`text`, whose content is `old`, changed where `new` differs from it; anything added is written as in `compact`.

    `old` and `new` are the full JSON-like content (every field, defaults included), so that a
    value is changed only where the meaning changed; `compact` is `new` without the defaults, so
    that an inserted section is not padded with them. A key is removed only where `new` has no
    value for it any more (None or empty). ruamel re-emits a few things its own way (`True` as
    `true`, spacing inside `{...}`), so only the lines ruamel changed are spliced into the
    author's text, and ruamel's whole output is the second choice. Returns the first candidate
    that `check` accepts (the caller's test that it reads back as `new`), or None. Raises
    ruamel.yaml's YAMLError if ruamel cannot read `text`.
    """
    before = _dump(text, lambda tree: None)
    after = _dump(text, lambda tree: _edit_mapping(tree, old, new, compact))
    candidates = [after] if before == text else [_splice(text, before, after), after]
    return next((candidate for candidate in candidates if candidate is not None and check(candidate)), None)


def _dump(text: str, edit: Callable[[Any], None]) -> str:
    document = _round_trip_yaml(text)
    tree = document.load(text)
    edit(tree)
    out = io.StringIO()
    document.dump(tree, out)
    return out.getvalue()


def _round_trip_yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    document = YAML()
    document.Representer = _representer()
    mapping_indent, sequence_indent, offset = _guess_indent(text)
    document.indent(mapping=mapping_indent, sequence=sequence_indent, offset=offset)
    document.width = 4096  # never re-wrap a long line the author wrote on one line
    document.preserve_quotes = True
    document.explicit_start = text.lstrip().startswith("---")
    return document


@functools.cache
def _representer() -> type:
    from ruamel.yaml.representer import RoundTripRepresenter

    class Representer(RoundTripRepresenter):
        """Writes None as `null` (ruamel's own choice is an empty value), as `Prompt.to_yaml` does."""

    Representer.add_representer(type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    return Representer


def _splice(text: str, before: str, after: str) -> Optional[str]:
    """`text` with the lines that differ between ruamel's unedited and edited output replaced; None where they cannot be placed."""
    original, unedited, edited = (t.splitlines(keepends=True) for t in (text, before, after))
    placed: dict[int, int] = {}  # line of `unedited` -> the same line in `original`, where ruamel kept or reworded one line
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, unedited, original, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            placed.update(zip(range(i1, i2), range(j1, j2)))
    hunks = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, unedited, edited, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:
            if any(i not in placed for i in range(i1, i2)) or placed[i2 - 1] - placed[i1] != i2 - i1 - 1:
                return None
            start, end = placed[i1], placed[i2 - 1] + 1
        else:
            after_line = placed[i1 - 1] + 1 if i1 > 0 and i1 - 1 in placed else None
            before_line = placed[i1] if i1 in placed else (len(original) if i1 == len(unedited) else None)
            start = after_line if after_line is not None else before_line
            if start is None or (before_line is not None and after_line is not None and before_line != after_line):
                return None
            end = start
        hunks.append((start, end, edited[j1:j2]))
    for start, end, lines in reversed(hunks):
        original[start:end] = lines
    return "".join(original)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: 1, 1.0 and True differ, as they do in a content hash."""
    if a is _ABSENT or b is _ABSENT:
        return a is b
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def _edit_mapping(node: Any, old: dict[str, Any], new: dict[str, Any], compact: Any) -> None:
    compact = compact if isinstance(compact, dict) else new
    for key in list(node):
        value = new.get(key, _ABSENT)
        if key in old and (value is _ABSENT or (_is_empty(value) and not _same(old[key], value))):
            _remove_key(node, key)
    order = list(new)
    for key, value in new.items():
        before = old.get(key, _ABSENT)
        if _same(before, value) or (_is_empty(value) and key not in node):
            continue
        shape = compact.get(key, value)
        if key not in node:
            _insert_key(node, key, _to_node(shape), order)
        else:
            _edit_value(node, key, before, value, shape)


def _edit_sequence(node: Any, old: list[Any], new: list[Any], compact: Any) -> None:
    compact = compact if isinstance(compact, list) and len(compact) == len(new) else new
    if len(new) != len(old):
        rest = _detach_trailing(node, len(node) - 1)
        if len(new) > len(old):
            node.extend(_to_node(item) for item in compact[len(old):])
        else:
            del node[len(new):]
        _attach_trailing(node, len(node) - 1, rest)
    for index in range(min(len(old), len(new))):
        if not _same(old[index], new[index]):
            _edit_value(node, index, old[index], new[index], compact[index])


def _edit_value(container: Any, key: Any, old: Any, new: Any, shape: Any) -> None:
    """Change `container[key]` from `old` to `new`: inside it where both are non-empty collections, else replaced."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    current = container[key]
    if isinstance(current, CommentedMap) and isinstance(old, dict) and isinstance(new, dict) and old:
        _edit_mapping(current, old, new, shape)
    elif isinstance(current, CommentedSeq) and isinstance(old, list) and isinstance(new, list) and old and new \
            and len(current) == len(old):
        _edit_sequence(current, old, new, shape)
    else:
        rest = _detach_trailing(container, key)
        container[key] = _to_node(shape, like=current)
        _attach_trailing(container, key, rest)


def _insert_key(node: Any, key: str, value: Any, order: list[str]) -> None:
    """Insert after the nearest key that precedes it in `order`, so a file keeps the model's field order."""
    earlier = [k for k in order[:order.index(key)] if k in node]
    if not earlier:
        node.insert(0, key, value)
        return
    rest = _detach_trailing(node, earlier[-1])
    node.insert(list(node).index(earlier[-1]) + 1, key, value)
    _attach_trailing(node, key, rest)


def _remove_key(node: Any, key: str) -> None:
    keys = list(node)
    rest = _detach_trailing(node, key)
    del node[key]
    node.ca.items.pop(key, None)
    if keys.index(key) > 0:
        _attach_trailing(node, keys[keys.index(key) - 1], rest)


# --- the comment lines after a value ---------------------------------------------------------


def _last_leaf(container: Any, key: Any) -> tuple[Any, Any]:
    """Where ruamel keeps the comment after `container[key]`: the last scalar of a block collection, else the key itself."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    while True:
        value = container[key]
        if not isinstance(value, (CommentedMap, CommentedSeq)) or not value or value.fa.flow_style():
            return container, key
        container, key = value, (list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1)


def _comment_slot(container: Any) -> int:
    from ruamel.yaml.comments import CommentedMap

    return 2 if isinstance(container, CommentedMap) else 0


def _is_block_text(value: Any) -> bool:
    from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

    return isinstance(value, (LiteralScalarString, FoldedScalarString))


def _detach_trailing(container: Any, key: Any) -> str:
    """Take off the comment lines that follow `container[key]` (they belong to what comes next); an end-of-line comment stays."""
    if container.fa.flow_style():
        return ""
    leaf_container, leaf_key = _last_leaf(container, key)
    entry = leaf_container.ca.items.get(leaf_key)
    slot = _comment_slot(leaf_container)
    token = entry[slot] if entry and len(entry) > slot else None
    if token is None:
        return ""
    value = token.value
    if _is_block_text(leaf_container[leaf_key]) or value.startswith("\n"):
        entry[slot] = None  # after a block scalar the token holds only following lines; "\n..." has no end-of-line comment
        return value if _is_block_text(leaf_container[leaf_key]) else value[1:]
    end_of_line, _, rest = value.partition("\n")
    token.value = end_of_line + "\n"
    return rest


def _attach_trailing(container: Any, key: Any, rest: str) -> None:
    """Hang `rest` (comment lines) after `container[key]`."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    if not rest or container.fa.flow_style():
        return
    leaf_container, leaf_key = _last_leaf(container, key)
    entry = leaf_container.ca.items.setdefault(leaf_key, [None, None, None, None])
    slot = _comment_slot(leaf_container)
    token = entry[slot]
    if token is not None:
        token.value = (token.value if token.value.endswith("\n") else token.value + "\n") + rest
    else:
        entry[slot] = CommentToken(rest if _is_block_text(leaf_container[leaf_key]) else "\n" + rest, CommentMark(0))


# --- new values --------------------------------------------------------------------------------


def _to_node(value: Any, like: Any = None) -> Any:
    """`value` as ruamel nodes, block style; text keeps the quoting or block style of the value it replaces."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _to_node(item)
        return mapping
    if isinstance(value, list):
        return CommentedSeq(_to_node(item) for item in value)
    if isinstance(value, str):
        return _styled_text(value, like)
    return value


def _styled_text(text: str, like: Any) -> Any:
    from ruamel.yaml.scalarstring import (
        DoubleQuotedScalarString,
        FoldedScalarString,
        LiteralScalarString,
        SingleQuotedScalarString,
    )

    if "\n" in text:
        return FoldedScalarString(text) if isinstance(like, FoldedScalarString) else LiteralScalarString(text)
    if isinstance(like, (SingleQuotedScalarString, DoubleQuotedScalarString, LiteralScalarString, FoldedScalarString)):
        return type(like)(text)
    if _read_as_other_than_text(text):
        return SingleQuotedScalarString(text)
    return text


def _read_as_other_than_text(text: str) -> bool:
    """Plain `yes`, `on`, `1_000` are text to ruamel (YAML 1.2) but not to the loader promptops reads with (YAML 1.1)."""
    import yaml

    return yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False)) != "tag:yaml.org,2002:str"


def _guess_indent(text: str) -> tuple[int, int, int]:
    """The file's mapping indent, sequence indent and dash offset, as ruamel's `indent()` takes them; (2, 4, 2) if unseen."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    mapping = sequence = offset = None
    for parent, child in zip(lines, lines[1:]):
        if not parent.rstrip().endswith(":"):
            continue
        key_column = len(parent) - len(parent.lstrip(" -"))
        item = _SEQUENCE_ITEM.match(child)
        if item and sequence is None and len(item["dash"]) >= key_column:
            offset, sequence = len(item["dash"]) - key_column, item.start("content") - key_column
        elif not item and mapping is None and len(child) - len(child.lstrip(" ")) > key_column:
            mapping = len(child) - len(child.lstrip(" ")) - key_column
    return mapping or 2, sequence or 4, offset if offset is not None else 2
