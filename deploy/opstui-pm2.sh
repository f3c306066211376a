#!/bin/sh
# opstui's daemon under PM2: deploy/ecosystem.config.js runs this script, not opstui itself.
# PM2 copies the environment of the shell that runs `pm2 start` into its own dump (`pm2 env`, `pm2 show`,
# `pm2 jlist`, and on disk in ~/.pm2/dump.pm2 after `pm2 save`). So the secrets (TELEGRAM_BOT_TOKEN,
# OPSTUI_HEARTBEAT_URL, passwords) are read here, from a file only this user can read, and never pass
# through PM2. exec: opstui takes this process's place and receives PM2's SIGINT and SIGHUP itself.
set -e
set -a
. "${OPSTUI_ENV_FILE:-/etc/opstui/env}"
set +a
exec /opt/opstui/.venv/bin/opstui daemon "$@"
