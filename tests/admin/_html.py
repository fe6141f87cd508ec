"""A small DOM over the standard library's HTML parser, for asserting on the admin's pages.

The tests find elements by the ``data-testid`` hooks the pages promise and read their text
and attributes, the way a person (or Playwright) reads the page; nothing here depends on
how a template is laid out beyond those hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser

__all__ = ["Element", "parse"]

VOID_ELEMENTS = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)


class Element:
    """One element: its tag, attributes (entity references decoded) and children."""

    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Element | str] = []

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs!r}>"

    def get(self, name: str, default: str | None = None) -> str | None:
        """An attribute's value (``""`` for a bare attribute), or ``default``."""
        if name not in self.attrs:
            return default
        value = self.attrs[name]
        return "" if value is None else value

    def attr(self, name: str) -> str:
        """An attribute that must be there."""
        value = self.get(name)
        assert value is not None, f"{self!r} has no attribute {name!r}"
        return value

    @property
    def raw_text(self) -> str:
        """Every text node below, joined as they come."""
        return "".join(
            child if isinstance(child, str) else child.raw_text for child in self.children
        )

    @property
    def text(self) -> str:
        """The text below, whitespace runs collapsed to one space, trimmed."""
        return " ".join(self.raw_text.split())

    def iter(self) -> Iterator[Element]:
        """This element and every element below it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Elements below (or this one) with the tag and attribute values given.

        Attribute names use ``_`` for ``-`` (``data_testid="job-row"``).
        """
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [
            element
            for element in self.iter()
            if (tag is None or element.tag == tag)
            and all(element.get(name) == value for name, value in wanted.items())
        ]

    def find(self, tag: str | None = None, **attrs: str) -> Element | None:
        """The first match of :meth:`find_all`, or ``None``."""
        found = self.find_all(tag, **attrs)
        return found[0] if found else None

    def testids(self, testid: str) -> list[Element]:
        """Every element with this ``data-testid``."""
        return self.find_all(data_testid=testid)

    def testid(self, testid: str) -> Element:
        """The one element with this ``data-testid``; fails if there is none or several."""
        found = self.testids(testid)
        assert len(found) == 1, f"expected one data-testid={testid!r}, found {len(found)}"
        return found[0]

    def has(self, testid: str) -> bool:
        """Whether any element has this ``data-testid``."""
        return bool(self.testids(testid))


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self._open: list[Element] = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), self._open[-1])
        self._open[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), self._open[-1])
        self._open[-1].children.append(element)

    def handle_endtag(self, tag: str) -> None:
        # Close up to the matching open element; a stray end tag changes nothing.
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._open[-1].children.append(data)


def parse(html: str) -> Element:
    """The document element of ``html``."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root
