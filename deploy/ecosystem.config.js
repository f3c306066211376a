// opstui's daemon under PM2 (docs/operations.md): `pm2 start deploy/ecosystem.config.js && pm2 save`.
// Reload the config with `pm2 sendSignal SIGHUP opstui`. Prefer systemd where you can: a monitor run by PM2
// stops when PM2's own daemon does, so set daemon.heartbeat_url and someone hears about it.
module.exports = {
  apps: [
    {
      name: "opstui",
      // The executable uv or pip installed; no Node interpreter for it.
      script: "/opt/opstui/.venv/bin/opstui",
      args: "daemon",
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
      // The config; its secrets come from the environment of the shell that runs `pm2 start` (the config reads
      // ${TELEGRAM_BOT_TOKEN} and the like). Never write a token here: PM2 shows `env` in `pm2 show`.
      env: {
        OPSTUI_CONFIG: "/etc/opstui/opstui.toml",
      },
    },
  ],
};
