// The console's shared helpers, and the page's own module (body[data-page]). DOM is built with textContent only:
// nothing from Redis or Genesys is ever parsed as HTML.
export const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? '';
const GOOD = new Set(['closed', 'already_closed']);
const BAD = new Set(['failed', 'unconfirmed', 'forbidden']);

export function outcomeClass(name) {
  return GOOD.has(name) ? 'good' : (BAD.has(name) ? 'bad' : 'other');
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'className') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.details = body?.error?.details;
  }
}

export async function api(method, path, { json, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin' };
  if (method !== 'GET') init.headers['X-CSRF-Token'] = csrf;
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign('/ui/login');
    throw new ApiError(401, null);
  }
  const parsed = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export function notice(message, isError = false) {
  const box = document.getElementById('notice');
  box.textContent = message;
  box.classList.toggle('error', isError);
  box.hidden = !message;
}

export function when(seconds) {
  if (!seconds) return '';
  return new Date(seconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '-';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export function stackedBar(status) {
  const bar = svg('svg', { class: 'stack-bar', viewBox: '0 0 100 4', preserveAspectRatio: 'none', role: 'img',
    'aria-label': 'outcomes' });
  const total = status.total || Object.values(status.counts).reduce((a, b) => a + b, 0) || 1;
  let x = 0;
  const entries = Object.entries(status.counts)
    .sort(([a], [b]) => (outcomeClass(a) !== 'good') - (outcomeClass(b) !== 'good') || a.localeCompare(b));
  for (const [name, count] of entries) {
    const width = (100 * count) / total;
    const rect = svg('rect', { class: `o-${outcomeClass(name)}`, x, y: 0, width, height: 4 });
    const title = svg('title');
    title.textContent = `${name}: ${count}`;
    rect.append(title);
    bar.append(rect);
    x += width;
  }
  return bar;
}

export function countChips(status) {
  const chips = el('span', { className: 'counts' });
  for (const name of Object.keys(status.counts).sort()) {
    chips.append(el('span', { className: `chip o-${outcomeClass(name)}`, text: `${name} ${status.counts[name]}` }));
  }
  return chips;
}

export function progressText(status) {
  return `${status.done}/${status.total ?? '?'}`;
}

// The org a page acts for ('' for default): a chooser on the page, else the page's own.
export function orgQuery(prefix = '?') {
  const chosen = document.getElementById('org')?.value ?? document.body.dataset.org ?? '';
  return chosen && chosen !== 'default' ? `${prefix}org=${encodeURIComponent(chosen)}` : '';
}

const page = document.body.dataset.page;
if (page) {
  // The page's module is imported after the page has loaded: data-ready says its handlers are in place (the browser
  // tests wait for it before they type, click or choose a file).
  import(`./${page}.js`)
    .then((module) => module.start())
    .then(() => { document.body.dataset.ready = 'true'; })
    .catch((error) => notice(String(error), true));
}
