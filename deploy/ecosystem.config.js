// opstui's daemon under PM2 (docs/operations.md): `pm2 start deploy/ecosystem.config.js && pm2 save`.
// Reload the config with `pm2 sendSignal SIGHUP opstui`. Prefer systemd where you can: a monitor run by PM2
// stops when PM2's own daemon does, so set daemon.heartbeat_url and someone hears about it.
module.exports = {
  apps: [
    {
      name: "opstui",
      // A wrapper that reads the secrets from /etc/opstui/env and execs /opt/opstui/.venv/bin/opstui daemon, so
      // they never pass through PM2's environment (`pm2 env`, ~/.pm2/dump.pm2). No Node interpreter for it.
      script: "/opt/opstui/deploy/opstui-pm2.sh",
      interpreter: "none",
      cwd: "/opt/opstui",
      autorestart: true,
      // Restart after a crash, backing off (100 ms, doubling, up to 15 s) instead of a tight crash loop.
      exp_backoff_restart_delay: 100,
      min_uptime: "30s",
      max_restarts: 50,
      // PM2 stops an app with SIGINT, then SIGKILL after kill_timeout. opstui exits within 5 s of SIGINT
      // (actions stopped, outbox and alert state saved); the PM2 default of 1.6 s would cut that short.
      kill_timeout: 8000,
      // One JSON object a line on stdout, with its own timestamps: keep PM2 from adding its own.
      time: false,
      merge_logs: true,
      out_file: "/var/log/opstui/daemon.log",
      error_file: "/var/log/opstui/daemon.log",
      // The config file, which is no secret. Never put a token here or in the shell that runs `pm2 start`:
      // PM2 keeps both in its environment dump. The config reads ${TELEGRAM_BOT_TOKEN} set by the wrapper.
      env: {
        OPSTUI_CONFIG: "/etc/opstui/opstui.toml",
      },
    },
  ],
};
