import { api, el, notice, orgQuery } from './app.js';

let sweep = null; // {id, chosen, org}

function filters(form) {
  const data = new FormData(form);
  const number = (name) => (data.get(name) === '' || data.get(name) === null ? null : Number(data.get(name)));
  const result = {
    min_age_minutes: number('min_age_minutes') ?? 0,
    lookback_days: number('lookback_days') ?? 30,
    include_parked: data.get('include_parked') === 'on',
    skip_connected_agent: data.get('skip_connected_agent') === 'on',
    queue_ids: String(data.get('queue_ids') || '').split(/\s+/).filter(Boolean),
  };
  if (number('idle_minutes') !== null) result.idle_minutes = number('idle_minutes');
  if (number('max_count') !== null) result.max_count = number('max_count');
  return result;
}

let sweep0 = ''; // the org query of the sweep being previewed
function waitFor(id) {
  return new Promise((resolve, reject) => {
    const ask = async () => {
      try {
        const state = await api('GET', `/v1/sweeps/${encodeURIComponent(id)}${sweep0}`);
        if (state.state === 'running') setTimeout(ask, 1000);
        else resolve(state);
      } catch (error) {
        reject(error);
      }
    };
    ask();
  });
}

function show(state) {
  const summary = document.getElementById('sweep-summary');
  if (state.state === 'error') { summary.textContent = `The sweep did not run: ${state.error}`; return; }
  const s = state.summary;
  const chosen = state.candidates.filter((c) => c.chosen).length;
  summary.textContent = `${s.candidates} candidate(s), ${s.chosen} chosen (${s.pages} page(s) over ${s.intervals} `
    + `interval(s), ${s.duplicates_dropped} duplicate(s) dropped).`
    + (state.candidates.length < s.candidates ? ` Showing the first ${state.candidates.length}.` : '');
  document.querySelector('#candidates tbody').replaceChildren(...state.candidates.map((c) => el('tr',
    { className: c.chosen ? 'chosen' : 'skipped' },
    el('td', { className: 'mono', text: c.conversation_id ?? '' }),
    el('td', { text: c.chosen ? 'close' : 'skip' }),
    el('td', { className: 'when', text: c.started ?? '' }),
    el('td', { text: c.reason ?? '' }))));
  sweep = { id: s.sweep_id, chosen: s.chosen };
  document.getElementById('sweep-result').dataset.sweep = s.sweep_id;
  const confirm = document.getElementById('confirm-form');
  confirm.hidden = s.chosen === 0 || chosen === 0;
  document.getElementById('chosen-count').textContent = String(s.chosen);
  document.getElementById('confirm-count').value = '';
  document.getElementById('close-these').disabled = true;
  document.getElementById('close-these').textContent = `Close these ${s.chosen}`;
}

export function start() {
  document.getElementById('sweep-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = document.getElementById('preview');
    button.disabled = true;
    document.getElementById('sweep-result').hidden = false;
    document.getElementById('sweep-summary').textContent = 'Waiting for a worker to run the query…';
    document.getElementById('confirm-form').hidden = true;
    document.querySelector('#candidates tbody').replaceChildren();
    try {
      sweep0 = orgQuery();
      const queued = await api('POST', `/v1/sweeps${sweep0}`, { json: { filters: filters(event.target), dryRun: true } });
      show(await waitFor(queued.sweepId));
      notice('');
    } catch (error) {
      notice(error.message, true);
    } finally {
      button.disabled = false;
    }
  });
  document.getElementById('confirm-count').addEventListener('input', (event) => {
    document.getElementById('close-these').disabled = !sweep || event.target.value.trim() !== String(sweep.chosen);
  });
  document.getElementById('confirm-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const typed = Number(document.getElementById('confirm-count').value.trim());
    const button = document.getElementById('close-these');
    if (button.disabled) return; // a second Enter while the first close is on its way
    button.disabled = true;
    try {
      const started = await api('POST', `/v1/sweeps/${encodeURIComponent(sweep.id)}/close${sweep0}`, { json: { confirm: typed } });
      window.location.assign(`/ui/batches/${encodeURIComponent(started.batchId)}${sweep0}`);
    } catch (error) {
      notice(error.message, true);
      button.disabled = false;
    }
  });
}


