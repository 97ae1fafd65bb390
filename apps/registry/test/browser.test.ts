// The web UI in a real browser (Debian's chromium through playwright-core):
// sign in, fill the form, save, find the service in the list and its edge in
// the topology, and see a field error for a bad value.
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { ADMIN_TOKEN, startRegistry } from './harness';
import type { TestRegistry } from './harness';

const CHROMIUM = process.env['TRELLIS_CHROMIUM'] ?? '/usr/bin/chromium';

let registry: TestRegistry;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install it with \`node tools/setup/ensure-system-deps.mjs\` (or \`apt-get install chromium\`), or point TRELLIS_CHROMIUM at a Chromium binary`,
    );
  }
  registry = await startRegistry();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  // Nothing in the UI needs JavaScript: prove it by turning it off.
  page = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await registry?.close();
});

async function fill(fields: Record<string, string>): Promise<void> {
  for (const [name, value] of Object.entries(fields)) await page.fill(`[name="${name}"]`, value);
}

it('registers a service through the form and shows it in the list and the topology', async () => {
  await page.goto(`${registry.url}/ui/services/new`);
  // Not signed in: redirected to the sign-in page, then back to the form.
  expect(new URL(page.url()).pathname).toBe('/ui/login');
  await page.fill('#token', ADMIN_TOKEN);
  await Promise.all([page.waitForURL('**/ui/services/new'), page.click('button[type=submit]:has-text("Sign in")')]);

  await fill({
    name: 'storefront',
    team: 'web',
    description: 'The shop <b>front</b>',
    port: '8080',
    dependencies: 'catalog\nbasket',
    timeoutMs: '1500',
    retries: '2',
  });
  await page.selectOption('#protocol', 'http');
  await Promise.all([page.waitForURL('**/ui/services/storefront'), page.click('button:has-text("Save")')]);
  await expect(page.locator('h1').textContent()).resolves.toBe('storefront');
  // User text is rendered as text, never as markup.
  await expect(page.locator('.description').innerHTML()).resolves.toBe('The shop &lt;b&gt;front&lt;/b&gt;');
  await expect(page.locator('.neighbours').textContent()).resolves.toContain('catalog (missing)');

  const stored = await registry.store.getService('storefront');
  expect(stored?.value.spec).toMatchObject({
    team: 'web',
    port: 8080,
    policy: { timeoutMs: 1500, retries: { attempts: 2 } },
    dependencies: [{ service: 'catalog' }, { service: 'basket' }],
  });

  await page.goto(`${registry.url}/ui/services?q=store`);
  await expect(page.locator('table.services a', { hasText: 'storefront' }).count()).resolves.toBe(1);

  await page.goto(`${registry.url}/ui/topology`);
  await expect(page.locator('svg.topology path.edge[data-from="storefront"][data-to="catalog"]').count()).resolves.toBe(1);
  await expect(page.locator('svg.topology g.node.missing[data-service="catalog"]').count()).resolves.toBe(1);
  await expect(page.locator('svg.topology g.node[data-service="storefront"][data-registered="true"]').count()).resolves.toBe(1);
}, 120_000);

it('shows a field error next to a bad value and saves nothing', async () => {
  const before = await registry.snapshot();
  await page.goto(`${registry.url}/ui/services/new`);
  await fill({ name: 'Bad Name!', team: 'web', port: '99999' });
  await page.click('button:has-text("Save")');
  await expect(page.locator('.error[data-field="name"]').textContent()).resolves.toContain('DNS label');
  await expect(page.locator('.error[data-field="port"]').textContent()).resolves.toMatch(/65535/);
  // The form keeps what was typed.
  await expect(page.inputValue('#name')).resolves.toBe('Bad Name!');
  expect(await registry.snapshot()).toEqual(before);
}, 120_000);

it('edits a service with its current values and keeps history for rollback', async () => {
  await page.goto(`${registry.url}/ui/services/storefront/edit`);
  await expect(page.inputValue('#port')).resolves.toBe('8080');
  await expect(page.inputValue('#timeoutMs')).resolves.toBe('1500');
  await page.fill('#port', '9090');
  await Promise.all([page.waitForURL('**/ui/services/storefront'), page.click('button:has-text("Save")')]);
  expect((await registry.store.getService('storefront'))?.value.spec.port).toBe(9090);

  await page.goto(`${registry.url}/ui/services/storefront/history`);
  await expect(page.locator('.entry[data-generation="2"] .diff .added').allTextContents()).resolves.toContain('+   "port": 9090,');
  await Promise.all([page.waitForURL('**/ui/services/storefront'), page.click('button:has-text("Roll back to generation 1")')]);
  const restored = await registry.store.getService('storefront');
  expect(restored?.value).toMatchObject({ generation: 3, spec: { port: 8080 }, updated: { actor: 'admin' } });
}, 120_000);

it('renders the interactive API reference at /docs from its own assets, within its CSP', async () => {
  const context = await browser.newContext({ javaScriptEnabled: true });
  const docs = await context.newPage();
  const problems: string[] = [];
  docs.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
  docs.on('pageerror', (error) => problems.push(error.message));
  const origins = new Set<string>();
  docs.on('request', (request) => origins.add(new URL(request.url()).origin));
  try {
    await docs.goto(`${registry.url}/docs`);
    // Swagger UI fetched /openapi.json and rendered an operation from it.
    await docs.waitForSelector('#operations-services-putService, [id$="-putService"]', { timeout: 30_000 });
    await expect(docs.locator('.info .title').textContent()).resolves.toContain('Trellis registry');
    expect(problems).toEqual([]);
    expect([...origins]).toEqual([registry.url]);
  } finally {
    await context.close();
  }
}, 120_000);
