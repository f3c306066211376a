"""Queue libraries from other languages for the tests: BullMQ and Bull from npm, installed on first use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_LIBS = Path(__file__).parent.parent / ".ci" / "node" / "queue-libs"
"""Where the npm packages go (git-ignored, kept between runs)."""


def node_libs() -> Path:
    """BullMQ 5 and 6 and Bull 4 from npm, installed once into .ci/node (git-ignored)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the BullMQ/Bull tests need the real npm packages")
    wanted = ["bullmq5@npm:bullmq@5.81.5", "bullmq6@npm:bullmq@6.7.0", "bull@4.16.5"]
    if not all((NODE_LIBS / "node_modules" / name).is_dir() for name in ("bullmq5", "bullmq6", "bull")):
        NODE_LIBS.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--prefix", str(NODE_LIBS), "--no-audit", "--no-fund", "--loglevel=error", *wanted],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"npm install failed:\n{result.stderr}"
    return NODE_LIBS


def run_node(script: str, tmp_path: Path, *args: str) -> Any:
    """Run a node script with the queue libraries on NODE_PATH; returns the JSON it prints."""
    libs = node_libs()
    path = tmp_path / "script.js"
    path.write_text(script)
    result = subprocess.run(
        ["node", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(libs / "node_modules")},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


BULLMQ_SCRIPT = r"""
const [lib, url, scenario] = process.argv.slice(2);
const { Queue, Worker, FlowProducer } = require(lib);
const u = new URL(url);
const connection = { host: u.hostname, port: Number(u.port) };
(async () => {
  const queue = new Queue('orders', { connection });
  let release;
  const hold = new Promise((res) => { release = res; });
  const worker = new Worker('orders', async (job) => {
    if (job.name === 'boom') throw new Error('intentional');
    if (job.name === 'slow') await hold;
    return 'ok';
  }, { connection, concurrency: 1 });
  await queue.add('ok', {});
  await queue.add('boom', {}, { attempts: 1 });
  while ((await queue.getJobCounts('completed', 'failed')).failed < 1) await new Promise((r) => setTimeout(r, 50));
  await queue.add('slow', {});
  while ((await queue.getJobCounts('active')).active < 1) await new Promise((r) => setTimeout(r, 50));
  for (let i = 0; i < 3; i++) await queue.add('plain', { i });
  await queue.add('pri', {}, { priority: 1 });
  await queue.add('pri', {}, { priority: 5 });
  await queue.add('later', {}, { delay: 60000 });
  const flow = new FlowProducer({ connection });
  await flow.add({ name: 'parent', queueName: 'orders', data: {}, children: [{ name: 'child', queueName: 'orders' }] });
  await flow.close();
  if (scenario === 'paused') {
    await queue.pause();
    await queue.add('plain', { whilePaused: true });
  }
  await worker.close(true);
  const counts = await queue.getJobCounts();
  const paused = await queue.isPaused();
  process.stdout.write(JSON.stringify({ counts, paused }));
  await queue.close();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
"""


BULL_SCRIPT = r"""
const [url] = process.argv.slice(2);
const Queue = require('bull');
(async () => {
  const queue = new Queue('jobs', url);
  for (let i = 0; i < 4; i++) await queue.add({ i });
  await queue.add({ p: 1 }, { priority: 1 });
  await queue.add({ later: true }, { delay: 60000 });
  await queue.pause();
  await queue.add({ whilePaused: true });
  const counts = await queue.getJobCounts();
  process.stdout.write(JSON.stringify({ counts, paused: await queue.isPaused() }));
  await queue.close();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
"""
