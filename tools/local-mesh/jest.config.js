module.exports = {
  ...require('../../jest.preset.js')(__dirname, 'local-mesh'),
  // The apps and the local-mesh tool are built once, before any of these suites runs (see the file).
  globalSetup: '<rootDir>/test/build-once.ts',
};
