import pytest

from rootless.containers import detach
from rootless.containers.store import Store
from rootless.errors import UsageError
from rootless.runspec import RunRequest


def test_volume_names_match_runspec_naming():
    named, anon = detach.volume_names("0123456789abcdef", ["data:/data", "./here:/x", "/abs:/y",
                                                           "/var/lib/db", "cache:/c:ro"])
    assert named == ["data", "cache"]
    assert anon == ["0123456789ab-var-lib-db"]


def test_log_opts():
    assert detach.parse_log_opts([]) == (0, 1)
    assert detach.parse_log_opts(["max-size=1m", "max-file=3"]) == (1 << 20, 3)
    with pytest.raises(UsageError, match="--log-opt 'max-file=0'"):
        detach.parse_log_opts(["max-file=0"])
    with pytest.raises(UsageError, match="--log-opt 'colour=red'"):
        detach.parse_log_opts(["colour=red"])


@pytest.mark.parametrize("flags, words", [
    ({"tty": True}, "-d -t"), ({"rm": True}, "-d --rm"), ({"interactive": True}, "-d -i"),
    ({"restart": "sometimes"}, "--restart"), ({"log_opt": ["max-size=lots"]}, "max-size=lots"),
])
def test_check_request_refuses_before_starting(flags, words):
    with pytest.raises(UsageError, match=words.replace("-", r"\-")):
        detach.check_request(RunRequest(image="busybox", detach=True, **flags))


def test_lingering_warning_once_and_only_under_systemd(tmp_path):
    store = Store()
    systemd = tmp_path / "systemd"
    linger = tmp_path / "linger"
    linger.mkdir()
    assert detach.warn_lingering(store, "alice", str(linger), str(systemd)) is None
    systemd.mkdir()
    (linger / "bob").touch()
    assert detach.warn_lingering(store, "bob", str(linger), str(systemd)) is None
    text = detach.warn_lingering(store, "alice", str(linger), str(systemd))
    assert "loginctl enable-linger alice" in text
    assert detach.warn_lingering(store, "alice", str(linger), str(systemd)) is None
