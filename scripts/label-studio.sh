#!/usr/bin/env bash
# Run a real, local Label Studio server for tests, CI and the demo.
#
#   scripts/label-studio.sh install   create $LS_VENV and install the pinned label-studio
#   scripts/label-studio.sh start     start it in the background (no-op if already running)
#   scripts/label-studio.sh stop      stop it (and its children)
#   scripts/label-studio.sh restart   stop, then start
#   scripts/label-studio.sh status    print state, URL, pid; exit 0 if running, 3 if not
#   scripts/label-studio.sh url       print the base URL
#   scripts/label-studio.sh token     print the API token (legacy token of the admin user)
#   scripts/label-studio.sh env       print `export ...` lines (URL, token) for `eval`
#
# Environment (all optional):
#   LS_VENV                      virtualenv for label-studio           (<repo>/.ls-venv)
#   LS_DATA                      data dir: SQLite db, media, log, pid  (<repo>/.ls-data)
#   LS_FILES_ROOT                local-files document root             (<repo>)
#   LS_PYTHON                    interpreter used to create the venv   (python3.11 / python3)
#   LS_START_TIMEOUT             seconds to wait for the server        (240)
#   LABEL_STUDIO_PORT            port on 127.0.0.1                     (8089)
#   LABEL_STUDIO_USERNAME        admin e-mail                          (admin@mmner.local)
#   LABEL_STUDIO_PASSWORD        admin password      (generated once, kept in $LS_DATA/password)
#   LABEL_STUDIO_USER_TOKEN      admin API token     (generated once, kept in $LS_DATA/token)
#
# label-studio runs in its own venv because it pins its own dependency tree (Django, numpy,
# boto3, ...) which must not leak into the toolkit's environment; the toolkit only talks to it
# over HTTP with label-studio-sdk.
set -euo pipefail

LS_VERSION="1.23.2"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LS_VENV="${LS_VENV:-$REPO_ROOT/.ls-venv}"
LS_DATA="${LS_DATA:-$REPO_ROOT/.ls-data}"
LS_FILES_ROOT="${LS_FILES_ROOT:-$REPO_ROOT}"
LS_START_TIMEOUT="${LS_START_TIMEOUT:-240}"
PORT="${LABEL_STUDIO_PORT:-8089}"
HOST="127.0.0.1"
URL="http://$HOST:$PORT"
PID_FILE="$LS_DATA/label-studio.pid"
LOG_FILE="$LS_DATA/label-studio.log"
TOKEN_FILE="$LS_DATA/token"
PASSWORD_FILE="$LS_DATA/password"
USERNAME_FILE="$LS_DATA/username"

log() { printf 'label-studio.sh: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

random_secret() {
    # 40 hex chars (Label Studio's own legacy tokens are 40 hex chars too).
    od -An -N20 -tx1 /dev/urandom | tr -d ' \n'
}

pid_alive() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

healthy() {
    # /health answers {"status": "UP"} once Django serves requests.
    curl -fsS --max-time 3 "$URL/health" 2>/dev/null | grep -q '"UP"'
}

cmd_install() {
    local py="${LS_PYTHON:-}"
    if [[ -z "$py" ]]; then
        py="$(command -v python3.11 || command -v python3 || true)"
    fi
    [[ -n "$py" ]] || die "no python3 found (set LS_PYTHON)"
    if [[ -x "$LS_VENV/bin/label-studio" ]] &&
        "$LS_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$LS_VERSION')" 2>/dev/null; then
        log "label-studio $LS_VERSION already installed in $LS_VENV"
        return 0
    fi
    local t0=$SECONDS
    log "creating $LS_VENV with $("$py" --version 2>&1)"
    "$py" -m venv "$LS_VENV"
    # (grep drops pip's noise about optional local index folders; pipefail keeps pip's status.)
    "$LS_VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
    "$LS_VENV/bin/python" -m pip install --quiet "label-studio==$LS_VERSION" 2>&1 |
        { grep -v "is ignored" || true; }
    log "installed label-studio $LS_VERSION in $((SECONDS - t0))s"
}

# Credentials: environment wins; otherwise reuse what an earlier start generated; otherwise
# generate. Label Studio creates the user and its token only when the database is new, so the
# files must stay in step with the database: both live in $LS_DATA.
resolve_credentials() {
    mkdir -p "$LS_DATA"
    chmod 700 "$LS_DATA"
    local username password token
    username="${LABEL_STUDIO_USERNAME:-}"
    [[ -n "$username" ]] || username="$(cat "$USERNAME_FILE" 2>/dev/null || true)"
    [[ -n "$username" ]] || username="admin@mmner.local"
    password="${LABEL_STUDIO_PASSWORD:-}"
    [[ -n "$password" ]] || password="$(cat "$PASSWORD_FILE" 2>/dev/null || true)"
    [[ -n "$password" ]] || password="$(random_secret)"
    token="${LABEL_STUDIO_USER_TOKEN:-}"
    [[ -n "$token" ]] || token="$(cat "$TOKEN_FILE" 2>/dev/null || true)"
    if [[ -z "$token" && -f "$LS_DATA/label_studio.sqlite3" ]]; then
        die "$LS_DATA has a database but no token file: set LABEL_STUDIO_USER_TOKEN to its token, or remove $LS_DATA"
    fi
    [[ -n "$token" ]] || token="$(random_secret)"
    # With an existing database the user and token are fixed: refuse different ones rather than
    # write credentials the server does not know.
    if [[ -f "$LS_DATA/label_studio.sqlite3" ]]; then
        local pair name var
        for pair in username:LABEL_STUDIO_USERNAME password:LABEL_STUDIO_PASSWORD \
            token:LABEL_STUDIO_USER_TOKEN; do
            name="${pair%%:*}" var="${pair#*:}"
            if [[ -s "$LS_DATA/$name" && "$(cat "$LS_DATA/$name")" != "${!name}" ]]; then
                die "the database in $LS_DATA was created with another $name: unset $var, or stop the server and remove $LS_DATA"
            fi
        done
    fi
    (
        umask 077
        printf '%s\n' "$username" >"$USERNAME_FILE"
        printf '%s\n' "$password" >"$PASSWORD_FILE"
        printf '%s\n' "$token" >"$TOKEN_FILE"
    )
    chmod 600 "$USERNAME_FILE" "$PASSWORD_FILE" "$TOKEN_FILE"
    export LABEL_STUDIO_USERNAME="$username"
    export LABEL_STUDIO_PASSWORD="$password"
    export LABEL_STUDIO_USER_TOKEN="$token"
}

cmd_start() {
    if pid_alive && healthy; then
        log "already running at $URL (pid $(cat "$PID_FILE"))"
        return 0
    fi
    if pid_alive; then
        log "pid $(cat "$PID_FILE") is alive but $URL does not answer yet; waiting"
    else
        [[ -x "$LS_VENV/bin/label-studio" ]] || die "label-studio is not installed: run '$0 install' (LS_VENV=$LS_VENV)"
        # label-studio silently moves to another port when its own is taken: refuse instead.
        if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
            die "port $PORT on $HOST is taken by another process; set LABEL_STUDIO_PORT"
        fi
        resolve_credentials
        local t0=$SECONDS
        : >"$LOG_FILE"
        chmod 600 "$LOG_FILE"
        # setsid: the server leads its own process group, so `stop` can end it and its children.
        # The credentials travel in the environment, not on the command line (ps would show it).
        # shellcheck disable=SC2016  # $$ and $@ expand in the inner shell, on purpose
        env LABEL_STUDIO_BASE_DATA_DIR="$LS_DATA" \
            LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$LS_FILES_ROOT" \
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true \
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
            COLLECT_ANALYTICS=false \
            LATEST_VERSION_CHECK=false \
            DJANGO_DB=sqlite \
            PYTHONUNBUFFERED=1 \
            setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
            "$LS_VENV/bin/label-studio" start \
            --no-browser \
            --internal-host "$HOST" \
            --port "$PORT" \
            --data-dir "$LS_DATA" \
            --enable-legacy-api-token \
            >>"$LOG_FILE" 2>&1 </dev/null &
        disown || true
        log "starting label-studio $LS_VERSION on $URL (log: $LOG_FILE)"
    fi
    local deadline=$((SECONDS + LS_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if healthy; then
            log "up at $URL after $((SECONDS - ${t0:-$SECONDS}))s (pid $(cat "$PID_FILE"))"
            check_token
            return 0
        fi
        if ! pid_alive; then
            log "label-studio exited during start; log tail:"
            tail -n 60 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        sleep 1
    done
    log "label-studio did not answer on $URL within ${LS_START_TIMEOUT}s; log tail:"
    tail -n 60 "$LOG_FILE" >&2 || true
    cmd_stop
    exit 1
}

# The token is applied only when label-studio creates the user (a new database): check that the
# one in $LS_DATA/token is the one the server knows.
check_token() {
    local token code
    token="$(cat "$TOKEN_FILE" 2>/dev/null || true)"
    [[ -n "$token" ]] || return 0
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
        -H "Authorization: Token $token" "$URL/api/current-user/whoami")"
    if [[ "$code" != "200" ]]; then
        log "warning: the token in $TOKEN_FILE is refused (HTTP $code). The database in $LS_DATA"
        log "was created with another token: set LABEL_STUDIO_USER_TOKEN to it, or stop the"
        log "server and remove $LS_DATA to start afresh."
        return 1
    fi
}

cmd_stop() {
    if ! pid_alive; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    local pid
    pid="$(cat "$PID_FILE")"
    # The server leads its own process group (setsid in start): signal the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    if pid_alive && healthy; then
        echo "running $URL pid=$(cat "$PID_FILE") data=$LS_DATA"
        return 0
    elif pid_alive; then
        echo "starting $URL pid=$(cat "$PID_FILE") data=$LS_DATA"
        return 3
    fi
    echo "stopped $URL data=$LS_DATA"
    return 3
}

cmd_token() {
    [[ -s "$TOKEN_FILE" ]] || die "no token yet: run '$0 start'"
    cat "$TOKEN_FILE"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart)
    cmd_stop
    cmd_start
    ;;
status) cmd_status ;;
url) echo "$URL" ;;
token) cmd_token ;;
env)
    echo "export LABEL_STUDIO_URL=$URL"
    [[ -s "$TOKEN_FILE" ]] && echo "export LABEL_STUDIO_API_KEY=$(cat "$TOKEN_FILE")"
    ;;
*)
    echo "usage: $0 {install|start|stop|restart|status|url|token|env}" >&2
    exit 2
    ;;
esac
