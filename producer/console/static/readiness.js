import { api, el, notice, when, orgQuery } from './app.js';

const MARKS = { true: 'ok', false: 'FAIL', null: 'info' };

async function check(refresh) {
  const summary = document.getElementById('ready-summary');
  summary.textContent = 'Asking a worker…';
  try {
    const result = await api('GET', `/v1/readiness${refresh ? '?refresh=true' : ''}${orgQuery(refresh ? '&' : '?')}`);
    document.querySelector('#checks tbody').replaceChildren(...result.checks.map((c) => el('tr',
      { className: c.ok === false ? 'fail' : '' },
      el('td', { text: c.check }),
      el('td', {}, el('span', { className: `chip ${c.ok === false ? 'o-bad' : (c.ok ? 'o-good' : 'o-other')}`, text: MARKS[String(c.ok)] })),
      el('td', { text: c.detail }),
      el('td', { text: c.fix || '' }))));
    summary.textContent = result.error ? result.error
      : `${result.ready ? 'Ready: a close can work.' : 'Not ready: fix the rows marked FAIL.'} Checked ${when(result.checked_at)}.`;
    summary.dataset.ready = result.ready ? 'yes' : 'no';
  } catch (error) {
    notice(error.message, true);
  }
}

export function start() {
  check(false);
  document.getElementById('recheck').addEventListener('click', () => check(true));
}
