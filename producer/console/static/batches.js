import { el, notice, stackedBar, countChips, progressText, duration, when } from './app.js';

function row(b, withOrg) {
  const progress = el('progress', { max: b.total || 1, value: b.done });
  const cells = [
    el('td', {}, el('a', { className: 'mono', href: `/ui/batches/${encodeURIComponent(b.batch_id)}${b.org && b.org !== 'default' ? `?org=${encodeURIComponent(b.org)}` : ''}`, text: b.batch_id.slice(0, 8) })),
    el('td', { className: 'label', text: b.label }),
    el('td', { className: 'source', text: (b.source || '').slice(0, 60) }),
  ];
  if (withOrg) cells.push(el('td', { className: 'org', text: b.org ?? '' }));
  cells.push(
    el('td', { className: 'state', text: b.state }),
    el('td', {}, progress, ' ', el('span', { className: 'done', text: progressText(b) })),
    el('td', {}, stackedBar(b), countChips(b)),
    el('td', { className: 'rate', text: b.rate_per_minute ?? '-' }),
    el('td', { className: 'eta', text: duration(b.eta_seconds) }),
    el('td', { className: 'when', text: when(b.created_at) }),
  );
  return el('tr', { dataset: { batch: b.batch_id } }, ...cells);
}

export function start() {
  const table = document.getElementById('batches');
  const body = table.querySelector('tbody');
  const source = new EventSource('/v1/events/batches?limit=50');
  source.onmessage = (event) => {
    const { batches } = JSON.parse(event.data);
    const withOrg = table.dataset.org === 'yes' || batches.some((b) => b.org && b.org !== 'default');
    if (withOrg && table.dataset.org !== 'yes') {
      table.dataset.org = 'yes';
      const head = table.querySelector('thead tr');
      head.insertBefore(el('th', { text: 'Org' }), head.children[3]);
    }
    body.replaceChildren(...batches.map((b) => row(b, withOrg)));
    if (!batches.length) body.append(el('tr', { className: 'empty' }, el('td', { colspan: 10, text: 'No batch yet.' })));
    table.dataset.live = 'yes';
    notice('');
  };
  source.addEventListener('logged-out', () => window.location.assign('/ui/login'));
  source.addEventListener('unavailable', () => notice('Redis is unavailable: the page retries by itself.', true));
}
