import { ConfigError } from './config';

/**
 * Runs an app's async main; a configuration error prints the message naming the
 * variable and exits 2, any other startup failure exits 1.
 */
export function runMain(app: string, main: () => Promise<unknown>): void {
  main().catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${app}: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`${app}: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
