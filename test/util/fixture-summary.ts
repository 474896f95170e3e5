/**
 * A node:test reporter (used beside `spec` by `npm test`) that ends the run with one line: how many tests were
 * skipped because a reference fixture is absent, and where the fixtures come from (see ./fixtures.ts).
 */
import { MISSING_FIXTURE } from './fixtures.js';

interface Event { type: string; data?: { skip?: string | boolean } }

export default async function* fixtureSummary(source: AsyncIterable<Event>): AsyncGenerator<string> {
  let skipped = 0;
  for await (const ev of source) {
    if ((ev.type === 'test:pass' || ev.type === 'test:fail') && typeof ev.data?.skip === 'string'
      && ev.data.skip.startsWith(MISSING_FIXTURE)) skipped++;
  }
  yield `fixtures: ${skipped} test${skipped === 1 ? '' : 's'} skipped for missing fixtures `
    + `(reference fixtures come from ../shared/fixtures beside the repository or ACTVAR_FIXTURES_DIR; `
    + `each set's README says how it was made; ACTVAR_REQUIRE_FIXTURES=1 makes a missing one a failure)\n`;
}
