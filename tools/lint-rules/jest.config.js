// The workspace's lint rules, each shown to reject the crossing it exists for.
module.exports = require('../../jest.preset.js')(__dirname, 'lint-rules');
