export { findBinary, INSTALL_HINT } from './binaries';
export { ManagedProcess, waitUntil } from './child-process';
export { startEtcd, type StartEtcdOptions, type TestEtcd } from './etcd';
export { freePort } from './ports';
export { startRedis, type StartRedisOptions, type TestRedis } from './redis';
export { startSlowLoris, type SlowLoris, type SlowLorisOptions } from './slow-loris';
export { socketClosed } from './sockets';
export { startTcpProxy, type TcpProxy } from './tcp-proxy';
export { dockerAvailable } from './docker';
