import { api, el, notice, orgQuery } from './app.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const COLUMNS = ['conversation_id', 'conversationId', 'id'];
let checked = null; // {text, type, key}: what the last server dry run checked

const JSONL = 'application/x-ndjson';

function kindOf(text, name) {
  const lower = (name || '').toLowerCase();
  const first = text.split('\n', 1)[0].trim();
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson') || first.startsWith('{') || first.startsWith('"')) return JSONL;
  if (lower.endsWith('.csv')) return 'text/csv';
  return first.includes(',') || first.includes('\t') ? 'text/csv' : 'text/plain';
}

function jsonValue(line, key) {
  try {
    const parsed = JSON.parse(line);
    if (typeof parsed === 'string') return parsed;
    if (parsed && typeof parsed === 'object' && typeof parsed[key] === 'string') return parsed[key];
  } catch (error) { /* not JSON: reported as the line itself */ }
  return line;
}

function cells(line, separator) {
  // Good enough for the browser's first look (the server's CSV reader has the last word).
  return line.split(separator).map((cell) => cell.trim().replace(/^"(.*)"$/, '$1'));
}

// The browser's own check: the same rule as the server's, line by line.
export function browserCheck(text, type, named) {
  const csv = type === 'text/csv';
  const jsonl = type === JSONL;
  const lines = text.split(/\r?\n/);
  const problems = [];
  let valid = 0;
  let start = 0;
  let column = 0;
  let separator = ',';
  if (csv) {
    separator = lines[0].includes('\t') && !lines[0].includes(',') ? '\t' : ',';
    const header = cells(lines[0], separator);
    column = named ? header.indexOf(named) : header.findIndex((name) => COLUMNS.includes(name));
    if (column < 0) return { valid: 0, problems: [{ line: 1, value: lines[0].slice(0, 100), problem: `no column ${named || COLUMNS.join(' / ')}` }] };
    start = 1;
  }
  for (let i = start; i < lines.length; i += 1) {
    const raw = lines[i];
    if (!raw.trim() || (!csv && !jsonl && raw.trim().startsWith('#'))) continue;
    let value = raw.trim();
    if (csv) value = cells(raw, separator)[column] ?? '';
    if (jsonl) value = jsonValue(raw.trim(), named || 'conversation_id');
    if (UUID.test(value.trim())) valid += 1;
    else problems.push({ line: i + 1, value: value.slice(0, 100), problem: 'not a conversation id (a UUID)' });
  }
  return { valid, problems };
}

function showProblems(problems) {
  const body = document.querySelector('#problems tbody');
  body.replaceChildren(...problems.map((p) => el('tr', {},
    el('td', { text: p.line }), el('td', { className: 'mono', text: p.value }), el('td', { text: p.problem }))));
}

function current() {
  const text = document.getElementById('ids').value;
  const name = document.getElementById('file').dataset.name || '';
  const type = kindOf(text, name);
  const column = type === 'text/plain' ? '' : document.getElementById('column').value.trim();
  return { text, type, column };
}

function columnQuery(column, joiner) {
  return column ? `${joiner}column=${encodeURIComponent(column)}` : '';
}

function changed() {
  checked = null;
  document.getElementById('start').disabled = true;
  const { text, type, column } = current();
  const result = browserCheck(text, type, column);
  document.getElementById('browser-check').textContent = text.trim()
    ? `In the browser: ${result.valid} valid line(s), ${result.problems.length} invalid${result.problems.length ? ` (first at line ${result.problems[0].line})` : ''}. Run the dry run to check on the server.`
    : '';
}

async function dryRun() {
  const { text, type, column } = current();
  if (!text.trim()) { notice('Paste ids or choose a file first.', true); return; }
  const local = browserCheck(text, type, column);
  try {
    const result = await api('POST', `/v1/batches/dry-run${columnQuery(column, '?')}`,
      { body: text, headers: { 'Content-Type': type } });
    document.getElementById('dry-result').hidden = false;
    document.getElementById('dry-summary').textContent = `${result.valid} valid unique id(s) would be closed; `
      + `${result.invalid} invalid line(s); ${result.duplicates} duplicate(s) dropped.`
      + (result.invalid ? ' Invalid lines are recorded as invalid_id items; the rest run.' : '');
    showProblems(result.problems.length ? result.problems : local.problems.slice(0, 100));
    checked = { text, type, column, key: crypto.randomUUID(), valid: result.valid };
    const start = document.getElementById('start');
    start.disabled = result.valid === 0;
    start.textContent = `Start the batch (${result.valid} closes)`;
    notice('');
  } catch (error) {
    notice(error.message, true);
  }
}

async function startBatch() {
  if (!checked || checked.text !== document.getElementById('ids').value
      || checked.column !== current().column) { changed(); return; }
  const label = document.getElementById('new-label').value.trim();
  const query = (label ? `?label=${encodeURIComponent(label)}` : '') + orgQuery(label ? '&' : '?');
  const full = query + columnQuery(checked.column, query ? '&' : '?');
  document.getElementById('start').disabled = true;
  try {
    const accepted = await api('POST', `/v1/batches${full}`, { body: checked.text,
      headers: { 'Content-Type': checked.type, 'Idempotency-Key': checked.key } });
    window.location.assign(`/ui/batches/${encodeURIComponent(accepted.batchId)}${orgQuery()}`);
  } catch (error) {
    document.getElementById('start').disabled = false;
    notice(error.message, true);
  }
}

export function start() {
  const ids = document.getElementById('ids');
  ids.addEventListener('input', changed);
  document.getElementById('column').addEventListener('input', changed);
  document.getElementById('file').addEventListener('change', async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    event.target.dataset.name = file.name;
    ids.value = await file.text();
    changed();
  });
  document.getElementById('dry-run').addEventListener('click', dryRun);
  document.getElementById('start').addEventListener('click', startBatch);
}
