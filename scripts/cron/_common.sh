# _common.sh - shared by the cron wrappers in this directory; sourced, not executed.
#
# The wrapper sets $name (its own name, for messages and the lock file) and then calls:
#   load_env_file   read RDSSSL_ENV_FILE (VAR=value lines), if set, once it is trusted
#   take_lock       hold a flock(1) on fd 9 until the wrapper exits; exit 7 when held
#
# Both refuse what another user could have prepared (exit 3, saying the fix): an env file is
# executed as shell code, so it must belong to us or root and be writable by nobody else; and a
# lock file in a shared directory (/tmp, /run/lock) can be pre-created or held by anyone, which
# stops every run. So the lock lives in a private directory (0700, ours), by default
#   ${RDSSSL_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/rdsssl}/locks
# created with umask 077 when missing (parents included); RDSSSL_LOCK_DIR overrides the place,
# not the checks.

rdsssl_fail() {
    # rdsssl_fail CODE MESSAGE...: the message on stderr, then exit CODE.
    local code=$1
    shift
    echo "$name: $*" >&2
    exit "$code"
}

load_env_file() {
    local file="${RDSSSL_ENV_FILE:-}" real uid mode me
    [ -n "$file" ] || return 0
    [ -f "$file" ] || rdsssl_fail 3 "RDSSSL_ENV_FILE=$file is not a readable file"
    real=$(readlink -f -- "$file") || rdsssl_fail 3 "cannot resolve RDSSSL_ENV_FILE=$file"
    read -r uid mode < <(stat -c '%u %a' -- "$real") \
        || rdsssl_fail 3 "cannot stat RDSSSL_ENV_FILE=$real"
    me=$(id -u)
    if [ "$uid" != "$me" ] && [ "$uid" != 0 ]; then
        rdsssl_fail 3 "RDSSSL_ENV_FILE=$real is owned by uid $uid, not by you (uid $me) or" \
            "root, and it is run as shell code; fix it: chown $me $real"
    fi
    if (( 8#$mode & 8#022 )); then
        rdsssl_fail 3 "RDSSSL_ENV_FILE=$real is writable by group or others (mode $mode)," \
            "and it is run as shell code; fix it: chmod go-w $real (0600: it holds secrets)"
    fi
    set -a
    # shellcheck source=/dev/null
    . "$real" || exit 3
    set +a
}

lock_dir() {
    # The directory of the lock file (see the top of this file); prints it.
    if [ -n "${RDSSSL_LOCK_DIR:-}" ]; then
        printf '%s\n' "$RDSSSL_LOCK_DIR"
    elif [ -n "${RDSSSL_STATE_DIR:-}" ]; then
        printf '%s\n' "$RDSSSL_STATE_DIR/locks"
    elif [ -n "${XDG_STATE_HOME:-}" ]; then
        printf '%s\n' "$XDG_STATE_HOME/rdsssl/locks"
    elif [ -n "${HOME:-}" ]; then
        printf '%s\n' "$HOME/.local/state/rdsssl/locks"
    else
        return 1
    fi
}

take_lock() {
    local dir uid mode me
    dir=$(lock_dir) || rdsssl_fail 3 "HOME is not set; set RDSSSL_STATE_DIR or RDSSSL_LOCK_DIR"
    if [ ! -e "$dir" ] && [ ! -L "$dir" ]; then
        (umask 077 && mkdir -p -- "$dir") || rdsssl_fail 3 "cannot create the lock directory $dir"
    fi
    [ ! -L "$dir" ] || rdsssl_fail 3 "the lock directory $dir is a symbolic link; point" \
        "RDSSSL_LOCK_DIR at a real directory that only you can write to"
    [ -d "$dir" ] || rdsssl_fail 3 "the lock directory $dir is not a directory"
    read -r uid mode < <(stat -c '%u %a' -- "$dir") \
        || rdsssl_fail 3 "cannot stat the lock directory $dir"
    me=$(id -u)
    [ "$uid" = "$me" ] || rdsssl_fail 3 "the lock directory $dir is owned by uid $uid, not by" \
        "you (uid $me); fix it: chown $me $dir && chmod 700 $dir (or set RDSSSL_LOCK_DIR)"
    (( (8#$mode & 8#077) == 0 )) || rdsssl_fail 3 "the lock directory $dir is open to other" \
        "users (mode $mode), who could take or hold its lock; fix it: chmod 700 $dir"
    lock="$dir/rdsssl-$name.lock"
    command -v flock >/dev/null || rdsssl_fail 1 "flock(1) is missing (util-linux)"
    exec 9>>"$lock" || rdsssl_fail 1 "cannot open the lock file $lock"
    flock -n 9 || rdsssl_fail 7 "another run holds the lock $lock; not starting"
}
