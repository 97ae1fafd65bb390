// DEP0123: Node warns, once per process and without saying where, when a TLS client sends an IP
// address as its server name (RFC 6066 allows names only). grpc-js does that for a TLS target given
// as an IP unless 'grpc.ssl_target_name_override' names the server. Here every TLS connection a test
// file's process opens is checked, and the file fails on the first with an IP server name, with the
// stack that opened it. Tests name localhost (the test PKIs cover it); see docs/security.md.
const net = require('node:net');
const tls = require('node:tls');

const ORIGINAL = Symbol.for('trellis.tls.connect');
// The module is shared by every test file a worker runs: wrap Node's own connect, not the last file's wrapper.
tls[ORIGINAL] ??= tls.connect;
const connect = tls[ORIGINAL];
const offenders = [];

tls.connect = function checkedConnect(...args) {
  const options = args.find((arg) => arg !== null && typeof arg === 'object');
  if (options && typeof options.servername === 'string' && net.isIP(options.servername) !== 0 && offenders.length < 3) {
    offenders.push(new Error(`a TLS connection sent the IP address ${options.servername} as its server name`).stack);
  }
  return connect.apply(this, args);
};

afterAll(() => {
  if (offenders.length > 0) {
    throw new Error(
      `DEP0123: name the server (e.g. 'grpc.ssl_target_name_override': 'localhost'), not its IP address:\n${offenders.join('\n')}`,
    );
  }
});
