import { meshModelToDot } from './mesh-dot';
import { MeshFixture } from './mesh-fixture';

describe('meshModelToDot', () => {
  it('draws each service once and an edge per dependency, public services doubled, empty ones dashed', () => {
    const dot = meshModelToDot(
      new MeshFixture()
        .service('b', { ingress: { host: 'b.example.com' } })
        .service('a', { dependencies: [{ service: 'b', policy: { timeoutMs: 5 } }] })
        .instance('b', 'b-1', '10.0.0.1')
        .model(),
    );
    expect(dot).toContain('"a" [label="a\\ngrpc:8080 · 0 endpoints", style=dashed];');
    expect(dot).toContain('"b" [label="b\\ngrpc:8080 · 1 endpoint", peripheries=2];');
    expect(dot).toContain('"a" -> "b" [style=bold];');
    expect(dot.trim().startsWith('digraph mesh {')).toBe(true);
    expect(dot.trim().endsWith('}')).toBe(true);
  });
});
