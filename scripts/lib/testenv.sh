# Shared by scripts/test and scripts/bench (sourced, as root): the
# unprivileged test users, device modes, a copy of the checkout the test user
# owns, and its virtualenv. Sets: user, uid, work, src, venv; defines as_user.
#
# Why a copy: root's home is 0700, and tests and pytest write caches next to
# the sources. One work area per checkout path, so several worktrees can test
# at once.

user=${PRUN_TEST_USER:-prun-test}
nosub_user=prun-nosub

ensure_user() {
    local name=$1 ranges=$2
    id -u "$name" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$name"
    if [ "$ranges" = yes ]; then
        # useradd allocates ranges itself where login.defs says so; add one
        # only where it did not.
        grep -q "^$name:" /etc/subuid || usermod --add-subuids 200000-265535 "$name"
        grep -q "^$name:" /etc/subgid || usermod --add-subgids 200000-265535 "$name"
    else
        sed -i "/^$name:/d" /etc/subuid /etc/subgid
    fi
    install -d -m 0700 -o "$name" -g "$name" "/run/user/$(id -u "$name")"
}

prepare_test_env() {
    local here=$1
    # Serialised: worktrees testing at once would install into one venv.
    PRUN_EXTRAS=test flock /var/lock/prun-install.lock "$here/scripts/install" >/dev/null
    ensure_user "$user" yes
    ensure_user "$nosub_user" no
    chmod 0666 /dev/fuse /dev/net/tun
    uid=$(id -u "$user")
    local key
    key=$(printf '%s' "$here" | sha256sum | cut -c1-12)
    work=/var/tmp/prun-ci-$key
    src=$work/src
    venv=$work/venv
    install -d -m 0755 -o "$user" -g "$user" "$work"
    rm -rf "$src"
    mkdir -p "$src"
    tar -C "$here" --exclude=./.venv --exclude='./*.egg-info' -cf - . | tar -C "$src" -xf -
    chown -R "$user:$user" "$src"
    chmod -R go+rX "$src"

    local stamp
    stamp=$(sha256sum "$here/pyproject.toml" | cut -c1-16)
    if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$venv"
        as_user /usr/bin/python3 -m venv "$venv"
        as_user "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$src[test]"
        echo "$stamp" > "$venv/.stamp"
    else
        # Same dependencies: only re-point the editable install at the fresh copy.
        as_user "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$src" >/dev/null
    fi
}

as_user() {
    runuser -u "$user" -- env -i HOME="/home/$user" USER="$user" LOGNAME="$user" \
        PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
        XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        ${CI:+CI=true} ${PRUN_TESTS_MUST_WORK:+PRUN_TESTS_MUST_WORK=1} \
        PRUN_TEST_CHECKOUT="$src" "$@"
}
