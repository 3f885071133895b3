#!/bin/sh
# Container entrypoint: wait for the database (bounded), migrate when told to, then serve.
#
#   serve [ARGS]    (default) wait, migrate if MIGRATE=true, run `minor-illusion serve`
#   migrate | seed  wait, then run that command (the compose file's one-shot services)
#   anything else   run it as given
#
# Environment: DATABASE_URL, SECRET_KEY (see README), PORT (8000), WORKERS (2),
# DB_WAIT_SECONDS (60), MIGRATE (false: in compose a one-shot `migrate` service runs first).
set -eu

PORT="${PORT:-8000}"
WORKERS="${WORKERS:-2}"
DB_WAIT_SECONDS="${DB_WAIT_SECONDS:-60}"
MIGRATE="${MIGRATE:-false}"

command="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$command" in
  serve)
    minor-illusion wait-for-db --timeout "$DB_WAIT_SECONDS"
    # `serve` migrates before listening unless told not to; the embedded database (no
    # DATABASE_URL) is always migrated, as nothing else could have done it.
    migrate_flag="--no-migrate"
    if [ -z "${DATABASE_URL:-}" ] || [ "$MIGRATE" = "true" ]; then
      migrate_flag=""
    fi
    # shellcheck disable=SC2086 # an empty flag must vanish
    exec minor-illusion serve $migrate_flag --host 0.0.0.0 --port "$PORT" --workers "$WORKERS" "$@"
    ;;
  migrate | seed)
    minor-illusion wait-for-db --timeout "$DB_WAIT_SECONDS"
    exec minor-illusion "$command" "$@"
    ;;
  *)
    exec "$command" "$@"
    ;;
esac
