#!/usr/bin/env node
/**
 * Check a reproduction page in headless Chromium and take its screenshot (issue 14):
 *
 *   node scripts/check-report.mjs reports/quick/index.html docs/reproduction.png [width height]
 *
 * 1. `chromium --headless --dump-dom` with console logging to stderr: fails (exit 1) on any console
 *    message (errors, warnings from the page) or when the DOM lacks the verdict table or the SVG plots;
 * 2. `--screenshot` of the top of the page at width × height (default 1400 × 2400).
 * Chromium's own start-up noise (dbus, GPU) is not the page's and is ignored. Needs Debian's `chromium`.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [page, shot, w = '1400', h = '2400'] = process.argv.slice(2);
if (!page || !shot) { console.error('usage: node scripts/check-report.mjs PAGE.html OUT.png [width height]'); process.exit(2); }
if (!existsSync(page)) { console.error(`check-report: ${page} does not exist`); process.exit(2); }
const bin = ['chromium', 'chromium-browser', 'google-chrome'].find((b) => spawnSync('which', [b]).status === 0);
if (!bin) { console.error('check-report: no chromium on PATH (apt-get install chromium)'); process.exit(2); }
const url = 'file://' + resolve(page);
const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
const common = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--user-data-dir=${profile}`, '--enable-logging=stderr', '--v=0'];
try {
  const dom = spawnSync(bin, [...common, '--dump-dom', url], { encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 28 });
  const consoleLines = (dom.stderr ?? '').split('\n').filter((l) => /CONSOLE|Uncaught|Failed to load resource|Not allowed to load/i.test(l));
  const problems = [];
  if (dom.status !== 0) problems.push(`chromium exited ${dom.status}`);
  if (consoleLines.length) problems.push(`console messages:\n  ${consoleLines.join('\n  ')}`);
  const html = dom.stdout ?? '';
  const svgs = (html.match(/<svg /g) ?? []).length, imgs = (html.match(/<img /g) ?? []).length;
  if (!/<h2>Verdicts<\/h2>/.test(html)) problems.push('the rendered DOM has no verdict table');
  if (svgs < 4) problems.push(`the rendered DOM has ${svgs} SVG plots, expected at least 4`);
  if (problems.length) { console.error(`check-report: ${page}:\n- ${problems.join('\n- ')}`); process.exit(1); }
  const s = spawnSync(bin, [...common, `--screenshot=${resolve(shot)}`, `--window-size=${w},${h}`, url], { encoding: 'utf8', timeout: 120_000 });
  if (s.status !== 0 || !existsSync(shot)) { console.error(`check-report: the screenshot failed (exit ${s.status})\n${s.stderr}`); process.exit(1); }
  console.log(`check-report: ${page} rendered in ${bin} without console messages (${svgs} SVG plots, ${imgs} images); screenshot ${shot}`);
} finally {
  rmSync(profile, { recursive: true, force: true });
}
