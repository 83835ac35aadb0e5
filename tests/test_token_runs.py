"""
Replay into an empty state a chunk at a time (L{oauthd.state.token_runs})
builds the very state that applying the records one by one does.
"""

from __future__ import annotations

import random

import pytest

from oauthd.state import model, token_runs
from oauthd.state.entities import ACCESS, APP_PASSWORD, REFRESH, SESSION, USED_REFRESH, Client, Token, User
from oauthd.state.records import ClientPut, ClientRemoved, TokenIssued, TokenRevoked, UserPut, encode

NOW = 1_800_000_000


def journal(rng: random.Random, count: int, plain: bool) -> list[bytes]:
    """
    Clients and users, then C{count} records, most of them tokens: plain
    ones (what a chunk takes whole) with a few of everything else among
    them, or (C{plain} false) a mix of every kind of token and record.
    """
    rare = 0.05 if plain else 1.0
    clients = [f"c{i}" for i in range(rng.randint(1, 30))] + ["tok"]
    users = [f"u{i}" for i in range(rng.randint(1, 10))]
    payloads = [encode(ClientPut(Client(id=c, name="n", max_tokens=-1, enabled=plain or rng.random() > 0.1)))
                for c in clients]
    payloads += [encode(UserPut(User(name=u, disabled=not plain and rng.random() < 0.1))) for u in users]
    keys: list[int] = []
    for _ in range(count):
        r = rng.random()
        if r < 0.003 * rare:
            payloads.append(encode(ClientRemoved(rng.choice(clients))))
        elif r < 0.006 * rare:
            payloads.append(encode(TokenRevoked(rng.choice(keys) if keys else 1)))
        elif r < 0.008 * rare:
            payloads.append(encode(ClientPut(Client(id=rng.choice(clients) + "x", name="n"))))
        else:
            again = keys and rng.random() < (0.0001 if plain else 0.02)
            key = rng.choice(keys) if again else rng.getrandbits(rng.choice([128, 128, 128, 8]))
            keys.append(key)
            if plain:
                kind = ACCESS if rng.random() < 0.9 else rng.choice([APP_PASSWORD, SESSION, REFRESH])
                grant = ""
            else:
                kind = ACCESS if rng.random() < 0.7 else rng.choice([REFRESH, APP_PASSWORD, SESSION, USED_REFRESH])
                grant = "" if rng.random() < 0.8 else f"g{rng.randint(0, 50)}"
            user = "" if rng.random() < 0.7 else rng.choice(users + ([] if plain else ["nobody"]))
            lifetime = rng.choice([0, 10, 3600, 100000]) if rng.random() < 0.3 else 3600
            issued = NOW - rng.choice([0, 5, 50, 4000]) if rng.random() < 0.5 else NOW
            label = "" if rng.random() < (0.9995 if plain else 0.95) else "phone \u00e9"
            scope = "tok" if rng.random() < 0.001 else "s"
            client = rng.choice([*clients, ""])
            payloads.append(encode(TokenIssued(Token(key, kind, client, user, scope, issued, lifetime, grant,
                                                     label))))
    return payloads


def held(state: model.State) -> tuple[object, ...]:
    """
    Everything the state holds, in the order it holds it.
    """
    families = state.families
    return (
        list(state._rows.items()), state._own, state._by_client, state._by_user, state._by_grant,
        state._client_count, state._user_count, list(state.token_order.run(0, 1 << 62, 1 << 62)[0]),
        state._unbucketed, state.clients, state.users,
        [index._stale for index in (state._own, state._by_client, state._by_user, state._by_grant)],
        {g: (f.client_id, f.user, f.started, f.expires_at, f.used) for g, f in families._live.items()},
        {k: f.grant for k, f in families._used.items()},
    )


@pytest.mark.parametrize("size", [7, 64, 500, token_runs.CHUNK])
@pytest.mark.parametrize("plain", [True, False])
def test_chunks_build_the_state_records_one_by_one_build(size: int, plain: bool) -> None:
    taken = 0
    for seed in range(25):
        rng = random.Random(seed)
        payloads = journal(rng, rng.choice([10, 500, 3000]), plain)
        one_by_one = model.State()
        one_by_one.load(payloads, NOW, replaying=True)
        one_by_one._unbucketed = list(one_by_one.tokens)
        chunked = model.State()
        assert token_runs.replay_chunks(chunked, payloads, NOW, size) == len(payloads)
        chunked._unbucketed = list(chunked.tokens)
        assert held(chunked) == held(one_by_one), seed
        taken += len(chunked.tokens)
    assert taken


def test_a_malformed_record_is_named_by_its_number() -> None:
    payloads = [encode(ClientPut(Client(id="c1", name="one")))]
    payloads += [encode(TokenIssued(Token(key, ACCESS, "c1", "", "*", NOW, 60, "", ""))) for key in range(1, 200)]
    payloads[150] = payloads[150].replace(b"\t60\t", b"\tsoon\t")
    with pytest.raises(ValueError, match="^record 151: "):
        token_runs.replay_chunks(model.State(), payloads, NOW, 64)
