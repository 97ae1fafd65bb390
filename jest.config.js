// One jest run over every project, so `npm test` reports one total.
module.exports = {
  projects: ['<rootDir>/libs/*/jest.config.js', '<rootDir>/apps/*/jest.config.js', '<rootDir>/tools/*/jest.config.js'],
  reporters: ['default', '<rootDir>/tools/test/totals-reporter.js'],
  // A global option: the projects' own testTimeout (jest.preset.js) counts only when one project runs alone.
  // Generous, so a loaded machine makes a correct test slow, not failing.
  testTimeout: 120_000,
};
