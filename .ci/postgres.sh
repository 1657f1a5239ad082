# A PostgreSQL server for the tests of `PostgresStore` (tests/store_postgres.rs).
#
# Source it (`source .ci/postgres.sh`; a failure returns non-zero, which ends a shell under
# `set -e`): it exports HOOKGATE_TEST_POSTGRES_URL. When that
# variable already names a server that answers, it is kept as it is. Otherwise this installs
# Debian's `postgresql` package if no PostgreSQL binaries are found, creates a throw-away
# cluster in a temporary directory, starts it on 127.0.0.1 on a free port with password
# (scram-sha-256) authentication, so that the wrong-password test means something, and creates
# a database for the tests. Run as root, the server runs as the `postgres` user.
#
# The server is stopped when the shell that sourced this exits, unless that shell already has
# an EXIT trap or HOOKGATE_PG_KEEP=1 is set; run directly (`bash .ci/postgres.sh`), it is left
# running and the export line is printed.

hookgate_pg_main() {
    local how="$1"
    local url="${HOOKGATE_TEST_POSTGRES_URL:-}"
    local bindir
    bindir="$(hookgate_pg_bindir)"
    if [[ -n "$url" ]]; then
        if [[ -n "$bindir" ]] && "$bindir/pg_isready" -q -t 5 -d "$url"; then
            echo "postgres.sh: using the server at HOOKGATE_TEST_POSTGRES_URL" >&2
            return 0
        fi
        echo "postgres.sh: no server answers at HOOKGATE_TEST_POSTGRES_URL; starting one" >&2
    fi

    if [[ -z "$bindir" ]]; then
        echo "postgres.sh: no PostgreSQL binaries found; installing Debian's postgresql" >&2
        local sudo=()
        [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
        # The package's own cluster is not used; policy-rc.d may refuse to start it in a
        # container, which is fine.
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 ||
            return 1
        bindir="$(hookgate_pg_bindir)"
        if [[ -z "$bindir" ]]; then
            echo "postgres.sh: postgresql was installed but initdb is still missing" >&2
            return 1
        fi
    fi

    # The server refuses to run as root, so root runs it as an unprivileged user.
    local as=()
    if [[ "$(id -u)" -eq 0 ]]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin postgres || return 1
        fi
        as=(runuser -u postgres --)
    fi

    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/hookgate-pg.XXXXXX")" || return 1
    local password
    password="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '%s\n' "$password" >"$dir/pwfile"
    chmod 0600 "$dir/pwfile"
    [[ ${#as[@]} -eq 0 ]] || chown -R postgres "$dir" || return 1

    "${as[@]}" "$bindir/initdb" -D "$dir/data" -U hookgate --pwfile="$dir/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    rm -f "$dir/pwfile"

    # A throw-away cluster: durability settings off for speed; enough connections for the
    # tests' pools running in parallel.
    local port started=""
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 30000))
        # Something answers there already: try another port.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue
        fi
        if "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null; then
            started=1
            break
        fi
    done
    if [[ -z "$started" ]]; then
        echo "postgres.sh: the server did not start; its log:" >&2
        tail -n 50 "$dir/server.log" >&2 || true
        return 1
    fi
    "${as[@]}" "$bindir/createdb" -h "$dir" -p "$port" -U hookgate hookgate_test || return 1

    export HOOKGATE_TEST_POSTGRES_URL="postgres://hookgate:$password@127.0.0.1:$port/hookgate_test"
    export HOOKGATE_PG_DIR="$dir"
    echo "postgres.sh: PostgreSQL $("$bindir/postgres" -V | awk '{print $3}') on 127.0.0.1:$port, data in $dir" >&2

    HOOKGATE_PG_STOP="$(printf '%q ' "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop)"
    if [[ "$how" == sourced && "${HOOKGATE_PG_KEEP:-0}" != 1 && -z "$(trap -p EXIT)" ]]; then
        # shellcheck disable=SC2064
        trap "$HOOKGATE_PG_STOP >/dev/null 2>&1 || true; rm -rf $(printf '%q' "$dir")" EXIT
    else
        echo "postgres.sh: the server is left running; stop it with: $HOOKGATE_PG_STOP" >&2
    fi
}

# The newest PostgreSQL bin directory with initdb, or nothing.
hookgate_pg_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
    fi
    return 0
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    hookgate_pg_main executed
    printf 'export HOOKGATE_TEST_POSTGRES_URL=%q\n' "$HOOKGATE_TEST_POSTGRES_URL"
else
    hookgate_pg_main sourced
fi
