import { EventEmitter } from 'node:events';
import { emptyMeshState, type MeshState, type MeshWatcherEvents } from '@trellis/mesh-schema';
import { RegistryView } from './view';

/** A watcher driven by hand: what MeshWatcher emits, when the test says so. */
class FakeWatcher extends EventEmitter<MeshWatcherEvents> {
  ready = false;
  live = false;
  state: MeshState = emptyMeshState();
  closed = false;

  load(revision: string): void {
    this.state = emptyMeshState(revision);
    this.ready = true;
    this.emit('update', { revision, reset: true, changes: [] });
    this.emit('revision', revision);
  }

  apply(revision: string, mirrored = true): void {
    this.state.revision = revision;
    if (mirrored) this.emit('update', { revision, reset: false, changes: [] });
    this.emit('revision', revision);
  }

  setLive(live: boolean): void {
    this.live = live;
    this.emit('status', { live });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('RegistryView', () => {
  it('serves the mirror at once when it holds every write of this process', async () => {
    const watcher = new FakeWatcher();
    const view = new RegistryView(watcher);
    watcher.load('10');
    view.noteWrite('10');
    expect(await view.caughtUp()).toBe(watcher.state);
  });

  it('holds a read until the mirror reaches the last write, even through events it does not mirror', async () => {
    const watcher = new FakeWatcher();
    const view = new RegistryView(watcher, { catchUpMs: 60_000 });
    watcher.load('10');
    view.noteWrite('12');
    view.noteWrite('11'); // an older write finishing late does not lower the mark
    let served: MeshState | undefined;
    const read = Promise.resolve(view.caughtUp()).then((state) => (served = state));
    watcher.apply('11');
    await settle();
    expect(served).toBeUndefined();
    watcher.apply('12', false); // e.g. a host claim: no update, but the revision moved
    await read;
    expect(served).toBe(watcher.state);
  });

  it('waits for the first snapshot', async () => {
    const watcher = new FakeWatcher();
    const view = new RegistryView(watcher, { catchUpMs: 60_000 });
    const read = view.caughtUp();
    watcher.load('5');
    expect(await read).toBe(watcher.state);
  });

  it('gives up after the catch-up time so the caller reads etcd', async () => {
    const watcher = new FakeWatcher();
    const view = new RegistryView(watcher, { catchUpMs: 20 });
    watcher.load('10');
    view.noteWrite('11');
    expect(await view.caughtUp()).toBeUndefined();
  });

  it('releases waiting reads on close', async () => {
    const watcher = new FakeWatcher();
    const view = new RegistryView(watcher, { catchUpMs: 60_000 });
    const read = view.caughtUp();
    await view.close();
    expect(await read).toBeUndefined();
    expect(watcher.closed).toBe(true);
  });

  it('reports its age: 0 while the watch runs, the time since it stopped otherwise', () => {
    let now = 1_000_000;
    const watcher = new FakeWatcher();
    const view = new RegistryView(watcher, { now: () => now });
    watcher.load('3');
    watcher.setLive(true);
    now += 5_000;
    expect(view.ageSeconds()).toBe(0);
    watcher.setLive(false);
    now += 2_500;
    expect(view.ageSeconds()).toBe(2.5);
    watcher.setLive(false);
    now += 1_000;
    expect(view.ageSeconds()).toBe(3.5); // counted from the first drop, not the last report
    watcher.setLive(true);
    expect(view.ageSeconds()).toBe(0);
  });

  it('builds a derived value once per mirror state', () => {
    const watcher = new FakeWatcher();
    const view = new RegistryView(watcher);
    watcher.load('1');
    let builds = 0;
    const build = () => ++builds;
    expect(view.derive('n', build)).toBe(1);
    expect(view.derive('n', build)).toBe(1);
    watcher.apply('2', false);
    expect(view.derive('n', build)).toBe(1); // nothing the mirror holds changed
    watcher.apply('3');
    expect(view.derive('n', build)).toBe(2);
  });
});
