import { api, el, notice, stackedBar, countChips, progressText, duration, when, outcomeClass } from './app.js';

const section = document.getElementById('batch');
const batchId = section.dataset.batch;
const base = `/v1/batches/${encodeURIComponent(batchId)}`;
const org = section.dataset.org ? `org=${encodeURIComponent(section.dataset.org)}` : '';
const withOrg = (path) => (org ? `${path}${path.includes('?') ? '&' : '?'}${org}` : path);

function showStatus(s) {
  document.getElementById('state').textContent = s.state;
  const bar = document.getElementById('progress');
  bar.max = s.total || 1;
  bar.value = s.done;
  document.getElementById('done').textContent = progressText(s);
  document.getElementById('outcomes').replaceChildren(stackedBar(s), countChips(s));
  document.getElementById('rate').textContent = s.rate_per_minute ?? '-';
  document.getElementById('eta').textContent = duration(s.eta_seconds);
  document.getElementById('finished').textContent = when(s.finished_at) || '-';
  document.getElementById('reason').textContent = s.reason || '-';
  section.dataset.finished = s.finished_at ? 'yes' : '';
  document.getElementById('cancel').disabled = Boolean(s.finished_at);
}

function follow() {
  if (section.dataset.finished === 'yes') return;
  const source = new EventSource(withOrg(`${base}/events`));
  source.onmessage = (event) => { showStatus(JSON.parse(event.data)); notice(''); };
  source.addEventListener('end', () => { source.close(); reload(); });
  source.addEventListener('logged-out', () => window.location.assign('/ui/login'));
  source.addEventListener('unavailable', () => notice('Redis is unavailable: the page retries by itself.', true));
}

// -- results, paged on the server: a stack of cursors for "previous" -------------------------------------------
const cursors = [0];
let next = null;

function itemRow(item) {
  return el('tr', {},
    el('td', { className: 'mono', text: item.conversation_id }),
    el('td', {}, el('span', { className: `chip o-${outcomeClass(item.outcome)}`, text: item.outcome })),
    el('td', { text: item.attempts }),
    el('td', { text: Number(item.api_calls).toFixed(2) }),
    el('td', { text: when(item.finished_at) }),
    el('td', { text: item.error ?? '' }));
}

async function load() {
  const form = new FormData(document.getElementById('filter'));
  const query = new URLSearchParams({ limit: '50', cursor: String(cursors[cursors.length - 1]) });
  if (section.dataset.org) query.set('org', section.dataset.org);
  if (form.get('outcome')) query.set('outcome', form.get('outcome'));
  if (form.get('q')) query.set('q', form.get('q').trim().toLowerCase());
  const table = document.getElementById('items');
  table.dataset.loading = 'yes';
  try {
    const page = await api('GET', `${base}/items?${query}`);
    const rows = page.items.map(itemRow);
    if (!rows.length) {
      const more = page.cursor ? ' on this page of the scan: try Next' : '';
      rows.push(el('tr', { className: 'empty' }, el('td', { colspan: 6, text: `No matching result${more}.` })));
    }
    table.querySelector('tbody').replaceChildren(...rows);
    next = page.cursor;
    document.getElementById('next').disabled = !next;
    document.getElementById('prev').disabled = cursors.length <= 1;
    document.getElementById('page-no').textContent = `page ${cursors.length}`;
  } catch (error) {
    notice(error.message, true);
  } finally {
    table.dataset.loading = '';
  }
}

function reload() {
  cursors.length = 1;
  return load();
}

export function start() {
  follow();
  document.getElementById('filter').addEventListener('submit', (event) => { event.preventDefault(); reload(); });
  document.getElementById('next').addEventListener('click', () => { if (next) { cursors.push(next); load(); } });
  document.getElementById('prev').addEventListener('click', () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  document.getElementById('next').disabled = !document.getElementById('next').dataset.cursor;
  next = Number(document.getElementById('next').dataset.cursor) || null;
  document.getElementById('cancel').addEventListener('click', async () => {
    if (!window.confirm('Cancel this batch? Items not yet run end as cancelled.')) return;
    try {
      showStatus(await api('POST', withOrg(`${base}/cancel`)));
      notice('Batch cancelled: items not yet run end as cancelled.');
    } catch (error) {
      notice(error.message, true);
    }
  });
  document.getElementById('retry').addEventListener('submit', async (event) => {
    event.preventDefault();
    const outcomes = new FormData(event.target).getAll('outcome');
    if (!outcomes.length) { notice('Choose at least one outcome to retry.', true); return; }
    const button = document.getElementById('retry-button');
    if (button.disabled) return; // one retry batch per click, not one per double click
    button.disabled = true;
    try {
      const started = await api('POST', withOrg(`${base}/retry`), { json: { outcomes } });
      window.location.assign(withOrg(`/ui/batches/${encodeURIComponent(started.batchId)}`));
    } catch (error) {
      notice(error.message, true);
      button.disabled = false;
    }
  });
}
