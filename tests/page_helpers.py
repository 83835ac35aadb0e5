"""
Reading the pages as a browser would: their forms (action, method, fields,
buttons), labels, and the attributes of the cookies they set.
"""

from __future__ import annotations

from html.parser import HTMLParser

from attrs import define, field


@define
class Form:
    """
    A form on a page: where it posts, its fields (hidden and visible, with
    the values they hold) and its submit buttons' name and value.
    """

    action: str
    method: str
    fields: dict[str, str] = field(factory=dict)
    inputs: list[dict[str, str]] = field(factory=list)
    buttons: list[tuple[str, str]] = field(factory=list)

    def filled(self, button: tuple[str, str] | None = None, **values: str) -> dict[str, str]:
        """
        What the browser posts: the fields, C{values} typed in, and the
        button pressed.
        """
        posted = {**self.fields, **values}
        if button is not None and button[0]:
            posted[button[0]] = button[1]
        return {k: v for k, v in posted.items() if v}


@define
class Page:
    """
    An HTML page, parsed.
    """

    lang: str = ""
    title: str = ""
    forms: list[Form] = field(factory=list)
    labels: dict[str, str] = field(factory=dict)
    links: list[dict[str, str]] = field(factory=list)
    scripts: list[dict[str, str]] = field(factory=list)
    metas: list[dict[str, str]] = field(factory=list)
    text: str = ""

    @property
    def form(self) -> Form:
        assert len(self.forms) == 1, self.forms
        return self.forms[0]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._in: list[str] = []
        self._label_for = ""
        self._texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag not in ("input", "meta", "link"):
            self._in.append(tag)
        if tag == "html":
            self.page.lang = a.get("lang", "")
        elif tag == "form":
            self.page.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.page.forms:
            form = self.page.forms[-1]
            form.inputs.append(a)
            form.fields[a.get("name", "")] = a.get("value", "")
        elif tag == "button" and self.page.forms:
            self.page.forms[-1].buttons.append((a.get("name", ""), a.get("value", "")))
        elif tag == "label":
            self._label_for = a.get("for", "")
            self.page.labels[self._label_for] = ""
        elif tag == "link":
            self.page.links.append(a)
        elif tag == "script":
            self.page.scripts.append(a)
        elif tag == "meta":
            self.page.metas.append(a)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if tag == "label":
            self._label_for = ""

    def handle_data(self, data: str) -> None:
        if "title" in self._in:
            self.page.title += data
        if "label" in self._in and self._label_for:
            self.page.labels[self._label_for] += data
        self._texts.append(data)

    def close(self) -> None:
        super().close()
        self.page.text = " ".join(" ".join(self._texts).split())


def read_page(html: bytes | str) -> Page:
    text = html.decode("utf-8") if isinstance(html, bytes) else html
    reader = _Reader()
    reader.feed(text)
    reader.close()
    return reader.page


def cookie_attributes(header: str) -> tuple[str, str, dict[str, str]]:
    """
    A C{Set-Cookie} header's name, value and attributes (names in lower
    case; a flag's value is C{""}).
    """
    first, *rest = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    attributes = {}
    for part in rest:
        key, _, attr_value = part.partition("=")
        attributes[key.lower()] = attr_value
    return name, value, attributes
