// Records the jest totals for tools/test/run-all.mjs, which prints the CI line
// `N passed, N failed` after adding the static checks. Run alone (`npx jest`),
// it prints the same line itself.
const fs = require('node:fs');
const path = require('node:path');

class TotalsReporter {
  onRunComplete(_contexts, results) {
    const totals = {
      passed: results.numPassedTests,
      failed: results.numFailedTests + results.numRuntimeErrorTestSuites,
      skipped: results.numPendingTests + results.numTodoTests,
    };
    const file = path.resolve(__dirname, '../../tmp/jest-totals.json');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(totals));
    process.stdout.write(
      `\njest: ${totals.passed} passed, ${totals.failed} failed${totals.skipped ? `, ${totals.skipped} skipped` : ''}\n`,
    );
  }
}
module.exports = TotalsReporter;
