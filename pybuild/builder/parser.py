"""The Containerfile parser: text -> a flat list of instruction nodes, as BuildKit's parser makes them.

The rules follow BuildKit's ``frontend/dockerfile/parser`` package so that a Containerfile means the
same thing to pybuild as to ``docker build``:

* parser directives (``# syntax=``, ``# escape=``, ``# check=``) only before anything else;
* line continuations with the escape character, comments and empty lines inside continuations;
* per-instruction argument parsing (JSON or shell form, ENV/LABEL pairs, HEALTHCHECK, ONBUILD...);
* heredocs (``<<EOF``, ``<<-EOF``, quoted delimiters) for RUN, COPY and ADD.

Unknown instructions are kept (BuildKit's parser keeps them too); the builder rejects them. No
variable is expanded here: that is :mod:`pybuild.builder.shell`'s job once the build knows the values.
"""

from __future__ import annotations

from ..errors import ContainerfileError
from .directives import Directives, is_comment, lstrip, split_lines, trim_newline
from .gostrings import go_quote, go_trim_space
from .heredocs import can_contain_heredoc, chomp_heredoc_content, heredocs_from_line
from .instructions import node_from_line
from .parsetree import Containerfile, Heredoc, Node, ParseError

__all__ = ["Containerfile", "Heredoc", "Node", "chomp_heredoc_content", "dump", "parse"]


# -- the parser --------------------------------------------------------------------------------


def parse(text: str | bytes, filename: str = "Containerfile") -> Containerfile:
    """Parse a Containerfile. Every problem raises :class:`ContainerfileError` naming the file and line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    d = Directives()
    lines = split_lines(text)
    nodes: list[Node] = []
    warnings: list[str] = []
    current = 0  # lines consumed so far: the 1-based number of the last line read
    i = 0

    def fail(message: str, line: int) -> ContainerfileError:
        return ContainerfileError(message, file=filename, line=max(line, 1))

    while i < len(lines):
        raw = lines[i]
        i += 1
        if current == 0 and raw.startswith("\ufeff"):
            raw = raw[1:]
        token = lstrip(trim_newline(raw))
        try:
            d.check(token)
        except ParseError as exc:
            raise fail(str(exc), current + 1) from None
        if is_comment(token):
            token = ""
        current += 1
        start = current

        token, end_of_line = d.trim_continuation(token)
        if end_of_line and token == "":
            continue
        buf = [token]
        empty_continuation = False
        while not end_of_line and i < len(lines):
            raw = lines[i]
            i += 1
            token = trim_newline(raw)
            try:
                d.check(token)
            except ParseError as exc:
                raise fail(str(exc), current + 1) from None
            current += 1
            if is_comment(token):
                continue
            if lstrip(token) == "":
                empty_continuation = True
                continue
            token, end_of_line = d.trim_continuation(token)
            buf.append(token)
        line = "".join(buf)
        if empty_continuation:
            warnings.append(f"{filename}:{current}: empty continuation line found in: {line}")

        try:
            node = node_from_line(line, d)
        except ParseError as exc:
            raise fail(str(exc), start) from None
        except RecursionError:
            raise fail("instruction nested too deeply", start) from None

        if can_contain_heredoc(node) and "<<" in line:
            try:
                docs = heredocs_from_line(line)
            except ParseError as exc:
                raise fail(str(exc), start) from None
            for doc in docs:
                body: list[str] = []
                terminated = False
                while i < len(lines):
                    raw = lines[i]
                    i += 1
                    current += 1
                    candidate = trim_newline(raw)
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(raw)
                if not terminated:
                    raise fail(f"unterminated heredoc {doc.name}", start)
                doc.content = "".join(body)
                node.heredocs.append(doc)

        node.start_line = start
        node.end_line = current
        for child in node.children:
            child.start_line, child.end_line = start, current
        nodes.append(node)

    if not nodes:
        raise fail("file with no instructions", current)
    return Containerfile(
        nodes=nodes,
        directives=dict(d.seen),
        escape=d.escape,
        warnings=warnings,
        filename=filename,
    )


# -- dump --------------------------------------------------------------------------------------


def _dump_node(node: Node) -> str:
    out = node.value
    if node.flags:
        out += " [" + " ".join(go_quote(f) for f in node.flags) + "]"
    if node.children:
        out += " " + "".join("(" + _dump_node(c) + ")" for c in node.children)
    else:
        for arg in node.args:
            out += " " + go_quote(arg)
    return go_trim_space(out)


def dump(cf: Containerfile) -> str:
    """The parse tree in BuildKit's ``Node.Dump()`` format, one ``(instruction "arg"...)`` per line.

    The text ends with a newline, so it equals the ``result`` files of BuildKit's parser tests.
    """
    return "".join("(" + _dump_node(node) + ")\n" for node in cf.nodes)
