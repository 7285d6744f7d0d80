"""Script templates with ``{placeholders}``.

    "您好{name}，您的订单 {order_id:digits} 将于{date}{time}送达，确认请按1，改期请按2"

A deliberately small language instead of ``str.format`` (which would allow
``{name.__class__}`` / ``{x[0]}`` on user-supplied templates):

* ``{name}`` or ``{name:hint}``; *name* is an identifier (``str.isidentifier``,
  so ``{订单号}`` works), *hint* is a reading hint for the text frontend
  (``digits``, ``money``, ...). Whitespace around the name and hint is ignored,
  the hint is case-insensitive, and a full-width colon (``：``, typed by Chinese
  input methods) separates the hint as well.
* ``{name}`` (the contact's name, which planning fills in) reads as a person's name
  (hint ``name``: a polyphonic surname such as 单 or 曾 is said the way a surname is)
  unless it carries another hint; ``{收件人:name}`` asks the same of another variable.
* ``{{`` and ``}}`` are literal braces.
* Values lose the reading-mark characters ``⟪`` ``⟫`` (synthesis.frontend.marks):
  a contact field cannot smuggle a ``⟪hint:…⟫`` mark into its own clip.
* Positions in errors and in :class:`Placeholder` are 0-based character offsets
  into the template text.

Parse once, render many: :func:`parse_template` returns a list that
:func:`render_template` / :func:`render_with_spans` accept directly; passing the
text also works (parses are cached).

Pure Python apart from Django's gettext, which words the syntax errors shown to staff.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.utils.translation import gettext

from synthesis.frontend.marks import CLOSE, OPEN, mark, mark_name

__all__ = [
    "KNOWN_HINTS",
    "Placeholder",
    "TemplateSyntaxError",
    "MissingVariables",
    "parse_template",
    "template_variables",
    "validate_template",
    "render_template",
    "render_with_spans",
]

KNOWN_HINTS = frozenset({"digits", "money", "date", "time", "phone", "number", "text", "name"})
NAME_VARIABLE = "name"  # the contact's name: read as a person's name unless its placeholder says otherwise


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    hint: str | None
    start: int  # offset of "{" in the template text
    end: int  # offset just after "}"


class TemplateSyntaxError(ValueError):
    """``position`` is the 0-based character offset of the problem, ``snippet`` the text around it."""

    def __init__(self, text: str, position: int, problem: str):
        self.position = position
        self.problem = problem
        lo, hi = max(0, position - 12), min(len(text), position + 13)
        self.snippet = ("…" if lo > 0 else "") + text[lo:hi] + ("…" if hi < len(text) else "")
        super().__init__(
            gettext("position %(position)s: %(problem)s — near %(snippet)s")
            % {"position": position, "problem": problem, "snippet": repr(self.snippet)}
        )


class MissingVariables(KeyError):
    """Raised by rendering; ``names`` lists every missing variable in order of appearance."""

    def __init__(self, names: Iterable[str]):
        self.names = tuple(names)
        super().__init__(*self.names)

    def __str__(self) -> str:
        return "missing variables: " + ", ".join(self.names)


_BRACE = re.compile(r"[{}]")


def _check_name(text: str, name: str, pos: int) -> None:
    if not name:
        raise TemplateSyntaxError(text, pos, gettext("empty placeholder name"))
    if name.isidentifier():
        return
    if "." in name or "[" in name or "]" in name:
        problem = gettext(
            "attribute or index access (%(name)s) is not allowed in placeholders; use a plain variable name"
        ) % {"name": repr(name)}
    elif "!" in name:
        problem = gettext(
            "conversions (%(name)s) are not allowed in placeholders; use a plain variable name"
        ) % {"name": repr(name)}
    elif name.isdigit():
        problem = gettext("numbered placeholders (%(placeholder)s) are not allowed; use a variable name") % {
            "placeholder": "{" + name + "}"
        }
    else:
        problem = gettext(
            "%(name)s is not a valid variable name (use letters, digits and underscores, not starting with a digit)"
        ) % {"name": repr(name)}
    raise TemplateSyntaxError(text, pos, problem)


def _parse(text: str, allowed_hints: frozenset[str] | None) -> tuple[str | Placeholder, ...]:
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i = 0
    search = _BRACE.search
    while True:
        m = search(text, i)
        if m is None:
            literal.append(text[i:])
            break
        j = m.start()
        literal.append(text[i:j])
        if text[j] == "}":
            if text.startswith("}", j + 1):
                literal.append("}")
                i = j + 2
                continue
            raise TemplateSyntaxError(text, j, gettext("stray '}' (write '}}' for a literal brace)"))
        if text.startswith("{", j + 1):
            literal.append("{")
            i = j + 2
            continue
        close = search(text, j + 1)
        if close is None:
            raise TemplateSyntaxError(text, j, gettext("unclosed '{' (write '{{' for a literal brace)"))
        k = close.start()
        if text[k] == "{":
            raise TemplateSyntaxError(
                text, k, gettext("nested '{' inside the placeholder opened at position %(position)s") % {"position": j}
            )
        body = text[j + 1 : k].replace("：", ":")
        name, sep, hint = body.partition(":")
        name = name.strip()
        _check_name(text, name, j)
        hint_value: str | None = None
        if sep:
            hint_value = hint.strip().lower()
            if not hint_value:
                raise TemplateSyntaxError(
                    text,
                    j,
                    gettext("empty hint after ':' in placeholder %(placeholder)s") % {"placeholder": "{" + name + "}"},
                )
            if allowed_hints is not None and hint_value not in allowed_hints:
                known = ", ".join(sorted(allowed_hints))
                raise TemplateSyntaxError(
                    text,
                    j,
                    gettext("unknown hint %(hint)s (known hints: %(known)s)")
                    % {"hint": repr(hint.strip()), "known": known},
                )
        if literal:
            chunk = "".join(literal)
            if chunk:
                parts.append(chunk)
            literal.clear()
        parts.append(Placeholder(name, hint_value, j, k + 1))
        i = k + 1
    chunk = "".join(literal)
    if chunk:
        parts.append(chunk)
    return tuple(parts)


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str, allowed_hints: frozenset[str] | None) -> tuple[str | Placeholder, ...]:
    return _parse(text, allowed_hints)


def _hints_key(allowed_hints: Iterable[str] | None) -> frozenset[str] | None:
    if allowed_hints is None or isinstance(allowed_hints, frozenset):
        return allowed_hints
    return frozenset(allowed_hints)


def parse_template(
    text: str, *, allowed_hints: Iterable[str] | None = KNOWN_HINTS
) -> list[str | Placeholder]:
    """Split ``text`` into literal strings (escapes resolved) and :class:`Placeholder` items.

    Raises :class:`TemplateSyntaxError`. ``allowed_hints=None`` accepts any hint.
    """
    if not isinstance(text, str):
        raise TypeError(f"template must be a str, not {type(text).__name__}")
    return list(_parse_cached(text, _hints_key(allowed_hints)))


def validate_template(text: str, *, allowed_hints: Iterable[str] = KNOWN_HINTS) -> None:
    """Raise :class:`TemplateSyntaxError` if ``text`` is not a valid template."""
    parse_template(text, allowed_hints=allowed_hints)


def _parts(template: str | Sequence[str | Placeholder]) -> Sequence[str | Placeholder]:
    if isinstance(template, str):
        return _parse_cached(template, None)  # rendering does not care which hints exist
    return template


def template_variables(template: str | Sequence[str | Placeholder]) -> list[str]:
    """Distinct placeholder names in order of first appearance."""
    seen: dict[str, None] = {}
    for p in _parts(template):
        if type(p) is not str:
            seen[p.name] = None
    return list(seen)


def _missing(parts: Sequence[str | Placeholder], variables: Mapping[str, object]) -> MissingVariables:
    names: dict[str, None] = {}
    for p in parts:
        if type(p) is not str:
            v = variables.get(p.name)
            if v is None or not _value(v).strip():
                names[p.name] = None
    return MissingVariables(names)


_MARK_CHARACTERS = str.maketrans("", "", OPEN + CLOSE)


def _value(v: object) -> str:
    """A variable's text with the reading-mark characters ⟪ ⟫ removed: a contact field must not be able to
    write a ⟪hint:…⟫ mark of its own into the script (it would change how other text is read)."""
    text = v if type(v) is str else str(v)
    # Nearly every value has neither mark: two scans are cheaper than translate's copy.
    return text.translate(_MARK_CHARACTERS) if OPEN in text or CLOSE in text else text


def render_template(template: str | Sequence[str | Placeholder], variables: Mapping[str, str]) -> str:
    """Substitute every placeholder. Raises :class:`MissingVariables` naming all missing
    (absent, None, empty or whitespace-only) variables. Hints do not change the output."""
    parts = _parts(template)
    get = variables.get
    out: list[str] = []
    append = out.append
    for p in parts:
        if type(p) is str:
            append(p)
            continue
        v = get(p.name)
        if v is None:
            raise _missing(parts, variables)
        v = _value(v)
        if not v or v.isspace():
            raise _missing(parts, variables)
        append(v)
    return "".join(out)


def _reading_hint(p: Placeholder) -> str | None:
    return "name" if p.hint is None and p.name == NAME_VARIABLE else p.hint


def has_reading_hints(template: str | Sequence[str | Placeholder]) -> bool:
    """Does any placeholder ask for a particular reading (a hint other than "text"; {name} asks for "name")?"""
    return any(type(p) is not str and _reading_hint(p) not in (None, "text") for p in _parts(template))


def render_marked(template: str | Sequence[str | Placeholder], variables: Mapping[str, str]) -> str:
    """Like :func:`render_template`, with each hinted value wrapped as ⟪hint:value⟫ for the text frontend
    (see synthesis.frontend.marks); a name ({name}) only where its surname changes the reading (mark_name);
    values without a hint, or with hint "text", are plain."""
    # One pass, no spans: planning calls this once per contact, so it is most of planning's Python time.
    parts = _parts(template)
    get = variables.get
    out: list[str] = []
    append = out.append
    for p in parts:
        if type(p) is str:
            append(p)
            continue
        v = get(p.name)
        if v is None:
            raise _missing(parts, variables)
        v = _value(v)
        if not v or v.isspace():
            raise _missing(parts, variables)
        hint = _reading_hint(p)
        if hint == "name":
            append(_mark_name(v))
        else:
            append(mark(v, hint) if hint not in (None, "text") else v)
    return "".join(out)


# Names repeat across a contact list (surname + a few given-name characters): whether one starts with a
# polyphonic surname is worked out once per distinct name, not once per contact. Pure, so safe to cache.
_mark_name = functools.lru_cache(maxsize=1 << 16)(mark_name)


def render_with_spans(
    template: str | Sequence[str | Placeholder], variables: Mapping[str, str]
) -> tuple[str, list[tuple[int, int, str | None]]]:
    """Like :func:`render_template`, also returning ``(start, end, hint)`` for each substituted
    value: ``rendered[start:end]`` is the value, ``hint`` its placeholder's reading hint."""
    parts = _parts(template)
    get = variables.get
    out: list[str] = []
    spans: list[tuple[int, int, str | None]] = []
    pos = 0
    for p in parts:
        if type(p) is str:
            out.append(p)
            pos += len(p)
            continue
        v = get(p.name)
        if v is None:
            raise _missing(parts, variables)
        v = _value(v)
        if not v or v.isspace():
            raise _missing(parts, variables)
        out.append(v)
        end = pos + len(v)
        spans.append((pos, end, p.hint))
        pos = end
    return "".join(out), spans
