"""
L{oauthd.web.site.json_body}: a token answer written by template is the
very JSON the encoder makes of it, whatever its values and shape.
"""

from __future__ import annotations

import json

from twisted.web.test.requesthelper import DummyRequest

from oauthd.protocol.grants.answer import TokenAnswer
from oauthd.web.site import json_body


def _answer(**extra: object) -> TokenAnswer:
    answer = TokenAnswer(access_token="a1" * 24, token_type="Bearer", expires_in=3600, scope="openid metrics")
    answer.update(extra)
    answer.update(status="success", session_id="f0" * 32, client_name='the "bench" client \\ \u00e9\n\u2028')
    return answer


def _written(body: object) -> bytes:
    request = DummyRequest([b"token"])
    data = json_body(request, body)
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"%d" % len(data)]
    return data


def test_a_token_answer_is_the_json_of_its_keys_and_values() -> None:
    shapes = [
        _answer(), _answer(refresh_token="r" * 48), _answer(id_token="h.p.s"),
        _answer(refresh_token="r" * 48, id_token="h.p.s"), _answer(scope='odd "scope"\x00\ud800'),
    ]
    added = _answer()
    added["extra"] = "kept"
    removed = _answer()
    del removed["status"]
    not_a_number = _answer()
    not_a_number["expires_in"] = True
    not_text = _answer()
    not_text["client_name"] = ["a", 1]
    for body in [*shapes, added, removed, not_a_number, not_text]:
        assert _written(body) == json.dumps(body, separators=(",", ":")).encode("ascii"), body
    assert json.loads(_written(added))["extra"] == "kept"
