/**
 * A node:test reporter (used beside `spec` by `npm test`) that ends the run with two lines: how many tests were
 * skipped because a reference fixture is absent, and where the fixtures come from (see ./fixtures.ts); then the plain
 * closing line `tests: N passed, N failed, N skipped` (suites not counted).
 */
import { MISSING_FIXTURE } from './fixtures.js';

interface Event { type: string; data?: { skip?: string | boolean; todo?: string | boolean; details?: { type?: string } } }

export default async function* fixtureSummary(source: AsyncIterable<Event>): AsyncGenerator<string> {
  let skipped = 0, passed = 0, failed = 0, skippedAll = 0;
  for await (const ev of source) {
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    if (typeof ev.data?.skip === 'string' && ev.data.skip.startsWith(MISSING_FIXTURE)) skipped++;
    if (ev.data?.details?.type === 'suite') continue;
    if (ev.type === 'test:fail') failed++;
    else if (ev.data?.skip !== undefined && ev.data.skip !== false) skippedAll++;
    else passed++;
  }
  yield `fixtures: ${skipped} test${skipped === 1 ? '' : 's'} skipped for missing fixtures `
    + `(reference fixtures come from ../shared/fixtures beside the repository or ACTVAR_FIXTURES_DIR; `
    + `each set's README says how it was made; ACTVAR_REQUIRE_FIXTURES=1 makes a missing one a failure)\n`;
  yield `tests: ${passed} passed, ${failed} failed, ${skippedAll} skipped\n`;
}
