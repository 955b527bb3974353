import pytest

from rootless.containers import policy
from rootless.containers.policy import RestartPolicy, decide_restart, parse_restart
from rootless.errors import UsageError


@pytest.mark.parametrize("text, expected", [
    ("no", RestartPolicy("no")), ("always", RestartPolicy("always")),
    ("unless-stopped", RestartPolicy("unless-stopped")),
    ("on-failure", RestartPolicy("on-failure", 0)), ("on-failure:3", RestartPolicy("on-failure", 3)),
])
def test_parse_restart(text, expected):
    assert parse_restart(text) == expected
    assert str(parse_restart(text)) == text


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:x", "on-failure:-1"])
def test_parse_restart_rejects_with_the_users_text(text):
    with pytest.raises(UsageError, match="--restart"):
        parse_restart(text)


def test_on_failure_counts_and_ignores_success():
    p = RestartPolicy("on-failure", 2)
    assert decide_restart(p, 1, 0, False) and decide_restart(p, 1, 1, False)
    assert not decide_restart(p, 1, 2, False)
    assert not decide_restart(p, 0, 0, False)
    assert decide_restart(RestartPolicy("on-failure"), 3, 99, False)


def test_manual_stop_wins_over_always():
    assert decide_restart(RestartPolicy("always"), 0, 5, False)
    assert not decide_restart(RestartPolicy("always"), 0, 5, True)
    assert not decide_restart(RestartPolicy("unless-stopped"), 1, 0, True)
    assert not decide_restart(RestartPolicy("no"), 1, 0, False)


def test_backoff_doubles_caps_and_resets():
    d = policy.backoff(0, 0)
    assert d == policy.BACKOFF_START
    for _ in range(20):
        d = policy.backoff(d, 0.5)
    assert d == policy.BACKOFF_MAX
    assert policy.backoff(d, 30) == policy.BACKOFF_START
