// The benchmarks' smoke runs: each tool at tiny sizes, so `npm test` keeps them working (timings never fail a test).
module.exports = require('../../jest.preset.js')(__dirname, 'bench');
