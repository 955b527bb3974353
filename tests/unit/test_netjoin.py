"""--network container: flag checks (rootless.containers.netjoin, pure part)."""

from __future__ import annotations

import pytest

from rootless.containers.netjoin import check_flags
from rootless.errors import UsageError
from rootless.runspec import RunRequest


@pytest.mark.parametrize("flags, what", [
    ({"publish": ["8080:80"]}, "port publishing"),
    ({"publish_all": True}, "port publishing"),
    ({"dns": ["10.0.2.9"]}, "dns"),
    ({"dns_search": ["example.test"]}, "dns"),
    ({"add_host": ["db:10.0.2.9"]}, "adding host entries"),
    ({"userns": "keep-id"}, "a user namespace"),
    ({"uidmap": ["0:1:100"]}, "a user namespace"),
])
def test_flags_that_change_the_shared_network_are_refused(flags, what):
    req = RunRequest(image="img", network="container:web", **flags)
    with pytest.raises(UsageError) as err:
        check_flags(req)
    assert err.value.message == (f"use --network container:web: conflicting options: {what} "
                                 "and the network mode")
    assert err.value.exit_code == 125


def test_other_flags_are_fine():
    check_flags(RunRequest(image="img", network="container:web", hostname="h", name="n",
                           volumes=["/tmp:/tmp"]))
