"""
The bytes of an audit trail line (L{oauthd.services.audit_files.trail_line})
are those of a plain reference, whatever the fields: the same members in
the same order, the same escaping, the same chain value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from oauthd.services.audit_files import GENESIS, trail_line

PLACED = ("seq", "time", "event", "outcome", "chain")


def reference_line(
    previous: str, seq: int, time: int, event: str, outcome: str, fields: Mapping[str, object],
) -> tuple[bytes, str]:
    """
    The line as the trail's format describes it, spelled out the plain way:
    a dict of the members in their order, encoded once.
    """
    members: dict[str, object] = {"seq": seq, "time": time, "event": event, "outcome": outcome}
    for name in sorted(fields):
        if name not in PLACED:
            members[name] = fields[name]
    body = json.dumps(members, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    chain = hashlib.sha256(previous.encode("ascii") + b"\n" + body).hexdigest()
    return body[:-1] + b',"chain":"' + chain.encode("ascii") + b'"}\n', chain


# Any code point, lone surrogates, quotes, backslashes and control
# characters included.
hostile_text = st.text(st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    st.sampled_from('"\\\n\r\t\x00\x1f\x7f\u2028\u2029/:,{}'),
))
names = st.one_of(hostile_text, st.sampled_from(PLACED), st.sampled_from(("client", "ip", "token", "user")))
# Values as they come (text), and what a caller might pass besides: nested
# lists and dicts (whose keys stay in their order), numbers, NaN, None.
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=8,
)


@settings(max_examples=1000, deadline=None)
@given(
    previous=st.one_of(st.just(GENESIS), st.text("0123456789abcdef", min_size=64, max_size=64)),
    seq=st.integers(min_value=0, max_value=2**63),
    time=st.integers(min_value=0, max_value=2**40),
    event=hostile_text,
    outcome=hostile_text,
    fields=st.dictionaries(names, st.one_of(hostile_text, values), max_size=8),
)
def test_a_line_is_byte_for_byte_the_reference(
    previous: str, seq: int, time: int, event: str, outcome: str, fields: dict[str, object],
) -> None:
    """
    Random and hostile field sets (any text, names of the placed members,
    nested values) give the reference's bytes and chain value, twice over
    (the second time with the field names already seen).
    """
    expected = reference_line(previous, seq, time, event, outcome, fields)
    assert trail_line(previous, seq, time, event, outcome, fields) == expected
    assert trail_line(previous, seq, time, event, outcome, dict(reversed(fields.items()))) == expected


def test_nested_values_keep_their_order() -> None:
    """
    Only the fields are sorted: a nested object's members keep their order.
    """
    line, _ = trail_line(GENESIS, 1, 2, "e", "ok", {"b": {"z": 1, "a": [2, {"y": 3, "x": 4}]}, "a": "1"})
    assert line.startswith(b'{"seq":1,"time":2,"event":"e","outcome":"ok","a":"1",'
                           b'"b":{"z":1,"a":[2,{"y":3,"x":4}]},"chain":"')
