import { api, el, svg, notice, when, orgQuery } from './app.js';

const REFRESH_MS = 5000;

export function chart(bucket) {
  // Requests per minute over the last hour (bars) against the limit (a line).
  const width = 600;
  const height = 120;
  const used = bucket.used;
  const top = Math.max(bucket.limit_per_minute || 0, ...used.map((u) => u.requests), 1) * 1.1;
  const box = svg('svg', { viewBox: `0 0 ${width} ${height + 16}`, class: 'rate-chart', role: 'img',
    'aria-label': 'requests per minute over the last hour' });
  const step = width / used.length;
  used.forEach((u, i) => {
    const h = (u.requests / top) * height;
    const bar = svg('rect', { class: 'used', x: i * step + 1, y: height - h, width: Math.max(step - 2, 1), height: h });
    const title = svg('title');
    title.textContent = `${when(u.minute)}: ${u.requests} requests`;
    bar.append(title);
    box.append(bar);
  });
  if (bucket.limit_per_minute) {
    const y = height - (bucket.limit_per_minute / top) * height;
    box.append(svg('line', { class: 'limit', x1: 0, x2: width, y1: y, y2: y }));
    const label = svg('text', { x: 4, y: Math.max(y - 3, 10), class: 'axis' });
    label.textContent = `limit ${Math.round(bucket.limit_per_minute)}/min`;
    box.append(label);
  }
  const left = svg('text', { x: 0, y: height + 14, class: 'axis' });
  left.textContent = '-60 min';
  const right = svg('text', { x: width, y: height + 14, class: 'axis', 'text-anchor': 'end' });
  right.textContent = 'now';
  box.append(left, right);
  return box;
}

function show(fleet) {
  const workers = document.getElementById('workers');
  workers.textContent = `${fleet.workers.length}${fleet.workers.length ? `: ${fleet.workers.join(', ')}` : ''}`;
  document.getElementById('trust').textContent = fleet.analytics_trust.trusted
    ? 'trusted (a sample of each read is verified live)' : `DISTRUSTED: ${fleet.analytics_trust.reason ?? ''}`;
  const holder = document.getElementById('buckets');
  const cards = fleet.buckets.map((b) => {
    const card = el('section', { className: 'card bucket', dataset: { bucket: b.bucket } },
      el('h2', {}, 'OAuth client ', el('span', { className: 'mono', text: b.bucket })),
      el('dl', { className: 'facts' },
        el('dt', { text: 'Limiter' }), el('dd', { className: 'pause', text: `${b.paused_seconds ? `paused for ${b.paused_seconds} s` : 'not paused'} (${b.pauses} pauses so far)` }),
        el('dt', { text: 'Breaker' }), el('dd', { className: 'breaker', text: b.breaker_open ? `OPEN: ${b.breaker_open}` : `closed (${b.breaker_failures} consecutive failures)` }),
        el('dt', { text: 'Limit' }), el('dd', { className: 'limit', text: `${b.limit_per_minute ? Math.round(b.limit_per_minute) : '?'} requests/min (the limiter admits ${b.admitted_per_minute ?? '?'})` }),
        el('dt', { text: 'Last minute' }), el('dd', { className: 'last', text: `${b.used[b.used.length - 1].requests} requests` })),
      el('figure', { className: 'chart' }, chart(b)));
    return card;
  });
  if (!cards.length) cards.push(el('p', { className: 'card', id: 'no-buckets', text: 'No worker has recorded its request rate in the last two hours.' }));
  holder.replaceChildren(...cards);
  const rows = fleet.rejected.map((r) => el('tr', {},
    el('td', { className: 'mono', text: String(r.task_id ?? '').slice(0, 36) }),
    el('td', { className: 'mono', text: String(r.conversation_id ?? '').slice(0, 40) }),
    el('td', { text: r.outcome ?? '' }),
    el('td', { text: String(r.error ?? '').slice(0, 200) }),
    el('td', { text: when(r.finished_at) })));
  if (!rows.length) rows.push(el('tr', { className: 'empty' }, el('td', { colspan: 5, text: 'None.' })));
  document.querySelector('#rejected tbody').replaceChildren(...rows);
  document.body.dataset.fleet = 'shown';
}

async function refresh() {
  try {
    show(await api('GET', `/v1/fleet${orgQuery()}`));
  } catch (error) {
    notice(error.message, true);
  }
  setTimeout(refresh, REFRESH_MS);
}

export function start() {
  refresh();
}
