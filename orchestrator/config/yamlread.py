"""The cluster file read as plain data, within bounds, before any model sees it.

A regular file of at most 1 MiB (``--cluster /dev/zero`` is refused, not read for ever), UTF-8 (UTF-16 and
other bytes are refused with the offset), no NUL byte (in the file or written as an escape in a value),
nesting at most 32 levels deep (no RecursionError), at most MAX_EXPANDED in size once every alias is
written out (a "billion laughs" of nine lines is refused while it is composed, before anything walks it),
and no key given twice in one mapping (YAML would keep the last one silently). Every refusal is ReadRefused
with one line; the caller names the file.
"""

import codecs
from typing import Any, Dict, Optional, Sequence, Set, Tuple, Union

import yaml

from orchestrator.safeio import bounded

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
#: the data a file stands for, aliases written out: each value counts 1, each scalar also its characters
MAX_EXPANDED = 2 << 20


class ReadRefused(ValueError):
    """The file cannot be a cluster file; the message says why (one line, with its line number if any)."""


def read_text(path: str) -> str:
    """The file's text; ReadRefused when it is not a regular UTF-8 file of at most MAX_BYTES without NUL.

    OSError when it cannot be read at all."""
    try:
        data = bounded.read_regular(path, MAX_BYTES)
    except bounded.Refused as exc:
        raise ReadRefused(str(exc)) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or data[:2].count(b"\0") == 1:
        raise ReadRefused("is UTF-16; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadRefused("not UTF-8: byte 0x%02x at offset %d" % (data[exc.start], exc.start)) from None
    if "\0" in text:
        raise ReadRefused("line %d holds a NUL byte" % (text.count("\n", 0, text.index("\0")) + 1))
    return text


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting, data that aliases make too large, and repeated keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: Dict[int, int] = {}  # id(node) -> its size with aliases written out

    def compose_node(self, parent: Optional[yaml.Node], index: int) -> Optional[yaml.Node]:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ReadRefused("line %d: nested deeper than %d levels" % (mark.line + 1, MAX_DEPTH))
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._size(node)
        return node

    def _size(self, node: yaml.Node) -> None:
        """Note ``node``'s expanded size (its children's are noted already: an alias is its anchor's node);
        ReadRefused above MAX_EXPANDED. Linear in the file, however often an alias repeats a node."""
        if id(node) in self._sizes:
            return  # an alias: counted again where its parent adds it up
        if isinstance(node, yaml.ScalarNode):
            size = 1 + len(node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(item)] for item in node.value)
        else:
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        if size > MAX_EXPANDED:
            raise ReadRefused(
                "line %d: with its aliases written out the data is larger than %d values and characters "
                "(an alias repeated over and over?)" % (node.start_mark.line + 1, MAX_EXPANDED)
            )
        self._sizes[id(node)] = size

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: Set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *defaults' may be overridden by the keys beside it
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
            except TypeError:
                break  # an unhashable key: SafeLoader refuses it below
            if twice:
                raise ReadRefused("line %d: key %r is given twice" % (key_node.start_mark.line + 1, key))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Tuple[Any, "Lines"]:
    """The YAML document in ``text`` as plain data, and where each of its values is written; ReadRefused for
    the bounds above, yaml.YAMLError for invalid YAML. Strings holding NUL (``"\\0"`` escapes) are refused
    naming their place."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()
    _refuse_nul(data, "")
    return data, Lines(node)


class Lines:
    """Where each value of a YAML document is written (its composed ``root``), to name a problem's line."""

    def __init__(self, root: Optional[yaml.Node] = None) -> None:
        self._root = root

    def of(self, keys: Sequence[Union[str, int]]) -> Optional[int]:
        """The line (from 1) where the value at ``keys`` (mapping keys and list indices from the top) is
        written (its key's line in a mapping, its own in a list), or where the nearest enclosing one is when
        it is not written (a default); None when not even the first is, or there is no text."""
        node, line = self._root, None
        for key in keys:
            if isinstance(node, yaml.MappingNode):
                found = [
                    (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)
                ]
                if not found:
                    return line
                key_node, node = found[-1]
                line = key_node.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def _refuse_nul(value: Any, where: str) -> None:
    if isinstance(value, str) and "\0" in value:
        raise ReadRefused("%s: a NUL byte in the value" % (where or "<top>"))
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, where)
            _refuse_nul(item, "%s.%s" % (where, key) if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, "%s[%d]" % (where, index))
