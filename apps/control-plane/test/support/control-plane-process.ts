// The control plane's own main, bundled for a test to run as a process it can
// SIGKILL (a crash, not a graceful close). Configured by TRELLIS_* variables.
import '../../src/main';
