// One jest run over every project, so `npm test` reports one total.
module.exports = {
  projects: ['<rootDir>/libs/*/jest.config.js', '<rootDir>/apps/*/jest.config.js', '<rootDir>/tools/*/jest.config.js'],
  reporters: ['default', '<rootDir>/tools/test/totals-reporter.js'],
};
