/**
 * `actvar flops`: FLOPs per generated image, dense VAR vs ActVAR (transformer only, CFG on), counted
 * by running the real inference code in dry-run mode (no arithmetic, weights = shared zero buffers,
 * so d30 needs a few hundred MB), next to the paper's eq. (12) as printed and corrected
 * (docs/VAR.md §10–11).
 *
 *   actvar flops --preset d20 --token-rates 0.75,0.75 --expert-rate 0.75 --json
 *   actvar flops --table            (d16–d30 at (75,75;75), and d20 at the paper's Table 2 settings)
 */
import { Command, Option } from 'commander';
import { UserError } from '../errors.js';
import { ActVarConfigError, type ActVarConfig } from '../../actvar/config.js';
import { flopsReport, dryRunVar, TABLE1_REPORTED, TABLE2_SETTINGS, type FlopsReport } from '../../actvar/flops.js';
import { varPreset } from '../../var/config.js';
import { addActVarSettingsOptions, actvarSettings } from '../options.js';

function pct(v: number): string { return (v * 100).toFixed(1).padStart(6); }

function formatRow(r: FlopsReport): string {
  return `${r.preset.padEnd(5)} ${r.setting.padEnd(12)} ${r.dense_gflops.toFixed(1).padStart(9)} ${r.actvar_gflops.toFixed(1).padStart(9)} ` +
    `${pct(r.measured_saving)} ${pct(r.eq12_as_printed)} ${pct(r.eq12_corrected)} ${r.reported !== undefined ? pct(r.reported) : '     -'}`;
}

const HEADER = `${'model'.padEnd(5)} ${'(α,β;γ)'.padEnd(12)} ${'dense GF'.padStart(9)} ${'ActVAR GF'.padStart(9)} ${'saved%'.padStart(6)} ${'eq12%'.padStart(6)} ${'corr%'.padStart(6)} ${'paper%'.padStart(6)}`;

/** Reports for d16–d30 at (75,75;75) and for d20 at every Table 2 setting (measured, dry run). */
export function flopsTable(extra: Partial<ActVarConfig> = {}, log: (s: string) => void = () => {}): FlopsReport[] {
  const out: FlopsReport[] = [];
  for (const p of ['d16', 'd20', 'd24', 'd30']) {
    log(`counting ${p} …`);
    const model = dryRunVar(varPreset(p));
    const settings = p === 'd20' ? TABLE2_SETTINGS : TABLE2_SETTINGS.filter((s) => s.label === '(75,75;75)');
    for (const s of settings) {
      const r = flopsReport(p, { ...extra, tokenRates: s.tokenRates, expertRate: s.expertRate }, model);
      r.reported = s.label === '(75,75;75)' ? TABLE1_REPORTED[p] : s.reported;
      out.push(r);
    }
  }
  return out;
}

export function register(program: Command): void {
  const cmd = program.command('flops')
    .description('FLOPs per image (transformer, CFG on): dense VAR vs ActVAR, counted by a dry run, and eq. 12 of the paper')
    .addOption(new Option('--preset <name>', 'architecture').choices(['d16', 'd20', 'd24', 'd30']).default('d20'));
  addActVarSettingsOptions(cmd)
    .option('--table', 'd16–d30 at (75,75;75) and d20 at the paper\'s Table 2 settings')
    .option('--json', 'JSON output')
    .action((o: Record<string, unknown>) => {
      const settings = actvarSettings(o);
      try {
        if (o.table) {
          if (settings.tokenRates || settings.expertRate !== undefined) throw new UserError('--table uses the paper\'s settings; leave out --token-rates and --expert-rate');
          const rows = flopsTable(settings, o.json ? undefined : (s) => process.stderr.write(s + '\n'));
          if (o.json) process.stdout.write(JSON.stringify(rows.map(({ dense_by_category: _d, actvar_by_category: _a, ...r }) => r)) + '\n');
          else process.stdout.write([HEADER, ...rows.map(formatRow)].join('\n') + '\n');
          return;
        }
        const r = flopsReport(o.preset as string, settings, dryRunVar(varPreset(o.preset as string)));
        if (o.json) {
          const { dense_gflops, actvar_gflops, measured_saving, eq12_as_printed, eq12_corrected, ...rest } = r;
          process.stdout.write(JSON.stringify({ dense_gflops, actvar_gflops, measured_saving, eq12_as_printed, eq12_corrected, ...rest }) + '\n');
        } else {
          process.stdout.write([HEADER, formatRow(r)].join('\n') + '\n');
          process.stdout.write(`by category (GFLOPs), dense: ${JSON.stringify(r.dense_by_category)}\n                  ActVAR: ${JSON.stringify(r.actvar_by_category)}\n`);
        }
      } catch (e) {
        if (e instanceof ActVarConfigError) throw new UserError(e.message);
        throw e;
      }
    });
}
