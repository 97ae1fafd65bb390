// Checks on the deployment artefacts under deploy/ and apps/*/Dockerfile.
module.exports = require('../../jest.preset.js')(__dirname, 'deploy-tests');
