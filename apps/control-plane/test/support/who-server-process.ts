// Runs in a child process, so a test can freeze (SIGSTOP) an instance: a plain
// Who server answering with its instance id.
//   node who-server-process.js <instanceId>     prints {"serving": <port>} once bound
import { startWhoServer } from './who-service';

const [instanceId = 'who'] = process.argv.slice(2);
void startWhoServer(instanceId).then(
  (server) => {
    process.stdout.write(`${JSON.stringify({ serving: server.port })}\n`);
    process.on('SIGTERM', () => void server.stop().then(() => process.exit(0)));
  },
  (err: Error) => {
    process.stderr.write(`bind failed: ${err.message}\n`);
    process.exit(1);
  },
);
