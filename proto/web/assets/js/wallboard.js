// Supervisor wallboard (/wallboard): the live Snapshot (queues, agents, today's counters),
// watching a conversation, the archive of the best and worst chats with their transcripts,
// forced transfers and agent statuses. Every call carries the operator token (kept in session
// storage) as `Authorization: Bearer`.
//
// data-testid (static, see wallboard.html): wall-token, wall-connect, wall-disconnect,
// wall-connection, wall-updated, wall-error, ui-lang, kpi-tiles, routers, queue-table,
// no-queues, agents, watch-id, watch-start, watch-stop, watch-state, watch-log, ft-conversation,
// ft-kind, ft-target, ft-reason, ft-submit, ft-result, sas-agent, sas-status, sas-submit,
// sas-result, archive-department, archive-language, archive-from, archive-load, archive-error,
// archive-best, archive-worst, transcript.
// data-testid (made here): kpi (data-key), queue-row (data-department; cells queue-depth,
// queue-oldest, queue-offering), team (data-team; team-count with data-status), agent-row
// (data-agent-id; agent-status with data-status, agent-load, agent-status-select,
// agent-status-set), watch-event (data-kind), archive-row (data-conversation-id),
// transcript-msg (data-sender, data-seq), transcript-notes, transcript-summary.

import { request, openStream, joinUrl, oneofCase, camel } from './api.js';
import { el, clear, show, num, clock, loadJson, saveJson, sessionStore, localStore } from './dom.js';
import { t, pickLanguage, applyTexts, formatTime, formatDateTime } from './i18n.js';

const TOKEN_KEY = 'centralino.wallboard.token';
const LANG_KEY = 'centralino.uiLang';
/** Oldest waits above these (seconds) are shown as a warning / as bad. */
const WAIT_WARN_S = 60;
const WAIT_BAD_S = 180;
const ARCHIVE_LIMIT = 25;
const STATUSES = ['AGENT_STATUS_AVAILABLE', 'AGENT_STATUS_ON_CALL', 'AGENT_STATUS_AWAY', 'AGENT_STATUS_DISCONNECTED', 'AGENT_STATUS_OFFLINE'];
const EVENT_KINDS = ['queued', 'offered', 'assigned', 'message', 'closed', 'ratingRequested', 'requeued', 'offline', 'busy', 'transferred', 'handedOver', 'typing'];

/** Known counters with their labels; any other field of `counters` is shown too. */
const COUNTER_LABELS = {
  conversationsStarted: { en: 'Started', it: 'Iniziate' },
  conversationsOpen: { en: 'Open now', it: 'Aperte ora' },
  conversationsCompleted: { en: 'Completed', it: 'Completate' },
  conversationsAbandoned: { en: 'Abandoned', it: 'Abbandonate' },
  conversationsOffline: { en: 'Offline messages', it: 'Messaggi offline' },
  conversationsEscalated: { en: 'Escalated', it: 'Escalation' },
  offers: { en: 'Offers', it: 'Offerte' },
  offersAccepted: { en: 'Offers accepted', it: 'Offerte accettate' },
  offersDeclined: { en: 'Offers declined', it: 'Offerte rifiutate' },
  offersTimedOut: { en: 'Offers timed out', it: 'Offerte scadute' },
  transfers: { en: 'Transfers', it: 'Trasferimenti' },
  languageHandovers: { en: 'Language handovers', it: 'Passaggi di lingua' },
  recontacts: { en: 'Re-contacts', it: 'Ricontatti' },
  messages: { en: 'Messages', it: 'Messaggi' },
  csatGood: { en: 'Rated good', it: 'Valutate bene' },
  csatBad: { en: 'Rated bad', it: 'Valutate male' },
  stickyHits: { en: 'Sticky hits', it: 'Stesso operatore' },
  stickyMisses: { en: 'Sticky misses', it: 'Operatore non disponibile' },
  stickyTimeouts: { en: 'Sticky timeouts', it: 'Attese operatore scadute' },
};

const $ = (id) => document.getElementById(id);
const store = sessionStore();
let lang = pickLanguage(loadJson(localStore(), LANG_KEY, '') || navigator.language || 'en');
const tr = (key, vars) => t(lang, key, vars);
let token = loadJson(store, TOKEN_KEY, '') || '';
let snapshotStream = null;
let watchStream = null;
let lastSnapshot = null;

function humanise(key) {
  return key.replace(/([A-Z])/g, ' $1').replace(/^./, (c) => c.toUpperCase());
}

function label(key) {
  const known = COUNTER_LABELS[key];
  return known ? known[lang] || known.en : humanise(key);
}

function showError(message) {
  const node = $('wall-error');
  node.textContent = message || '';
  node.hidden = !message;
}

function admin(method, body) {
  return request('', `/v1/admin/${method}`, { body: body || {}, token });
}

// ---------- the snapshot ----------

function connect() {
  disconnect();
  if (!token) return;
  saveJson(store, TOKEN_KEY, token);
  show($('wall-disconnect'), true);
  showError('');
  // A first picture at once, then the live stream.
  admin('get-snapshot', {})
    .then(renderSnapshot)
    .catch((err) => showError(err.message));
  snapshotStream = openStream(joinUrl('', '/v1/admin/snapshot/stream'), {
    token: () => token,
    stopKinds: [],
    onEvent: ({ kind, data }) => {
      // `event: snapshot`, data the Snapshot (a stream-ending `error` never reaches here).
      if (data && typeof data === 'object' && (kind === 'snapshot' || kind === 'message')) renderSnapshot(data.snapshot || data);
    },
    onState: (s, detail) => {
      const conn = $('wall-connection');
      conn.hidden = false;
      conn.dataset.state = s;
      conn.textContent = { open: '●', retrying: '…', connecting: '…', ended: '○', failed: '×' }[s] || s;
      conn.title = s;
      if (s === 'failed') showError(detail.message);
      if (s === 'open') showError('');
    },
  });
}

function disconnect() {
  if (snapshotStream) snapshotStream.close();
  snapshotStream = null;
  show($('wall-disconnect'), false);
  show($('wall-connection'), false);
}

function tile(key, value, extraClass = '') {
  return el(
    'div',
    { class: `tile ${extraClass}`, 'data-testid': 'kpi', dataset: { key } },
    el('div', { class: 'tile-value', text: value }),
    el('div', { class: 'tile-label', text: label(key) }),
  );
}

function renderKpis(snapshot) {
  const counters = snapshot.counters || {};
  const box = $('kpi-tiles');
  clear(box);
  const good = num(counters.csatGood);
  const bad = num(counters.csatBad);
  if (good + bad > 0) {
    COUNTER_LABELS.csat = { en: 'Satisfaction', it: 'Soddisfazione' };
    box.append(tile('csat', `${Math.round((100 * good) / (good + bad))}%`, 'tile-key'));
  }
  const started = num(counters.conversationsStarted);
  if (started > 0) {
    COUNTER_LABELS.abandonRate = { en: 'Abandon rate', it: 'Tasso di abbandono' };
    box.append(tile('abandonRate', `${Math.round((100 * num(counters.conversationsAbandoned)) / started)}%`));
  }
  // Fields the Snapshot may carry besides counters (e.g. ASA, service level): shown as they come.
  for (const [key, value] of Object.entries(snapshot)) {
    if (['queues', 'agents', 'counters', 'nowUnixMs', 'routers', 'routersMissing', 'service'].includes(key)) continue;
    if (typeof value === 'number' || typeof value === 'string') box.append(tile(key, formatValue(key, value)));
  }
  const order = Object.keys(COUNTER_LABELS).filter((k) => k in counters);
  const rest = Object.keys(counters).filter((k) => !(k in COUNTER_LABELS));
  for (const key of [...order, ...rest]) {
    const value = counters[key];
    if (typeof value === 'object') continue;
    box.append(tile(key, formatValue(key, value)));
  }
  if (order.length + rest.length === 0) box.append(el('p', { class: 'muted', text: tr('wall.none') }));
}

function formatValue(key, value) {
  if (/seconds$/i.test(key)) return clock(value);
  if (/(percent|ratio|level)$/i.test(key)) {
    const n = Number(value);
    return n <= 1 && /ratio|level/i.test(key) ? `${Math.round(n * 100)}%` : `${Math.round(n)}%`;
  }
  return String(num(value) || value || 0);
}

function waitClass(seconds) {
  if (seconds >= WAIT_BAD_S) return 'wait-bad';
  if (seconds >= WAIT_WARN_S) return 'wait-warn';
  return '';
}

function renderQueues(snapshot) {
  const queues = (snapshot.queues || []).slice();
  const extra = [...new Set(queues.flatMap((q) => Object.keys(q)))].filter(
    (k) => !['department', 'language', 'depth', 'oldestWaitSeconds', 'offering'].includes(k),
  );
  const hasLanguage = queues.some((q) => q.language);
  const head = $('queue-head');
  clear(head);
  head.append(
    el(
      'tr',
      {},
      el('th', { text: tr('wall.department') }),
      hasLanguage ? el('th', { text: tr('wall.language') }) : null,
      el('th', { class: 'num', text: tr('wall.depth') }),
      el('th', { class: 'num', text: tr('wall.oldest') }),
      el('th', { class: 'num', text: tr('wall.offering') }),
      extra.map((k) => el('th', { class: 'num', text: label(k) })),
    ),
  );
  const body = $('queue-body');
  clear(body);
  queues.sort((a, b) => `${a.department}/${a.language || ''}`.localeCompare(`${b.department}/${b.language || ''}`));
  for (const q of queues) {
    const oldest = num(q.oldestWaitSeconds);
    body.append(
      el(
        'tr',
        { 'data-testid': 'queue-row', dataset: { department: q.department || '', language: q.language || '' } },
        el('td', { text: q.department || '—' }),
        hasLanguage ? el('td', { text: q.language || '—' }) : null,
        el('td', { class: 'num', 'data-testid': 'queue-depth', text: String(num(q.depth)) }),
        el('td', { class: `num ${waitClass(oldest)}`, 'data-testid': 'queue-oldest', text: num(q.depth) ? clock(oldest) : '—' }),
        el('td', { class: 'num', 'data-testid': 'queue-offering', text: String(num(q.offering)) }),
        extra.map((k) => el('td', { class: 'num', text: formatValue(k, q[k]) })),
      ),
    );
  }
  show($('no-queues'), queues.length === 0);
}

/** Column labels of the service table (ServiceToday in admin.proto). */
const SERVICE_LABELS = {
  department: { en: 'Department', it: 'Reparto' },
  language: { en: 'Language', it: 'Lingua' },
  waiting: { en: 'Waiting', it: 'In attesa' },
  oldestWaitSeconds: { en: 'Oldest wait', it: 'Attesa più lunga' },
  answered: { en: 'Answered', it: 'Risposte' },
  abandoned: { en: 'Abandoned', it: 'Abbandonate' },
  asaSeconds: { en: 'ASA', it: 'ASA' },
  serviceLevel: { en: 'Service level', it: 'Livello di servizio' },
};

/** Today's service per department and language: queue now, ASA and service level. */
function renderService(snapshot) {
  const rows = (snapshot.service || []).slice();
  const head = $('service-head');
  clear(head);
  const target = rows.map((r) => num(r.targetSeconds)).find((n) => n > 0);
  const columns = Object.keys(SERVICE_LABELS);
  head.append(
    el(
      'tr',
      {},
      columns.map((key) => {
        const known = SERVICE_LABELS[key];
        let text = known[lang] || known.en;
        if (key === 'serviceLevel' && target) text = `${text} (${target} s)`;
        return el('th', { class: ['department', 'language'].includes(key) ? '' : 'num', text });
      }),
    ),
  );
  const body = $('service-body');
  clear(body);
  rows.sort((a, b) => `${a.department}/${a.language}`.localeCompare(`${b.department}/${b.language}`));
  for (const r of rows) {
    const answered = num(r.answered);
    const settled = answered + num(r.abandoned);
    const oldest = num(r.oldestWaitSeconds);
    body.append(
      el(
        'tr',
        { 'data-testid': 'service-row', dataset: { department: r.department || '', language: r.language || '' } },
        el('td', { text: r.department || '—' }),
        el('td', { text: r.language || '—' }),
        el('td', { class: 'num', 'data-testid': 'service-waiting', text: String(num(r.waiting)) }),
        el('td', { class: `num ${waitClass(oldest)}`, text: num(r.waiting) ? clock(oldest) : '—' }),
        el('td', { class: 'num', 'data-testid': 'service-answered', text: String(answered) }),
        el('td', { class: 'num', text: String(num(r.abandoned)) }),
        el('td', { class: 'num', 'data-testid': 'service-asa', text: answered ? clock(Number(r.asaSeconds || 0)) : '—' }),
        el('td', {
          class: 'num',
          'data-testid': 'service-level',
          text: settled ? `${Math.round(100 * Number(r.serviceLevel || 0))}%` : '—',
        }),
      ),
    );
  }
  show($('no-service'), rows.length === 0);
}

function renderAgents(snapshot) {
  const agents = snapshot.agents || [];
  const byTeam = new Map();
  for (const a of agents) {
    const team = a.team || '';
    if (!byTeam.has(team)) byTeam.set(team, []);
    byTeam.get(team).push(a);
  }
  const box = $('agents');
  // Keep a status select the supervisor is using.
  const focused = document.activeElement;
  if (focused && focused.tagName === 'SELECT' && box.contains(focused)) return;
  clear(box);
  const list = $('agent-ids');
  clear(list);
  if (agents.length === 0) box.append(el('p', { class: 'muted', text: tr('wall.none') }));
  for (const team of [...byTeam.keys()].sort()) {
    const members = byTeam.get(team).sort((a, b) => (a.displayName || a.agentId).localeCompare(b.displayName || b.agentId));
    const counts = el('div', { class: 'team-counts' });
    for (const status of STATUSES) {
      const n = members.filter((a) => (a.status || 'AGENT_STATUS_UNSPECIFIED') === status).length;
      if (n) counts.append(el('span', { class: 'status-pill', 'data-testid': 'team-count', dataset: { status }, text: `${t(lang, `status.${status}`)}: ${n}` }));
    }
    const rows = el('tbody');
    for (const a of members) {
      list.append(el('option', { value: a.agentId }));
      const status = a.status || 'AGENT_STATUS_UNSPECIFIED';
      const select = el('select', { 'data-testid': 'agent-status-select', 'aria-label': `${tr('wall.setStatus')}: ${a.displayName || a.agentId}` });
      for (const s of ['AGENT_STATUS_AVAILABLE', 'AGENT_STATUS_AWAY', 'AGENT_STATUS_ON_CALL', 'AGENT_STATUS_OFFLINE']) {
        select.append(el('option', { value: s, text: t(lang, `status.${s}`) }));
      }
      if ([...select.options].some((o) => o.value === status)) select.value = status;
      const result = el('span', { class: 'muted', role: 'status' });
      const set = el('button', {
        type: 'button',
        class: 'button small',
        'data-testid': 'agent-status-set',
        text: tr('wall.setStatus'),
        on: { click: () => setAgentStatus(a.agentId, select.value, result) },
      });
      rows.append(
        el(
          'tr',
          { 'data-testid': 'agent-row', dataset: { agentId: a.agentId } },
          el('td', {}, el('strong', { text: a.displayName || a.agentId }), el('div', { class: 'muted', text: a.agentId })),
          el('td', {}, el('span', { class: 'status-pill', 'data-testid': 'agent-status', dataset: { status }, text: t(lang, `status.${status}`) })),
          el('td', { class: 'num', 'data-testid': 'agent-load', text: `${num(a.load)}/${num(a.capacity)}` }),
          el('td', {}, select, ' ', set, ' ', result),
        ),
      );
    }
    box.append(
      el(
        'div',
        { class: 'team', 'data-testid': 'team', dataset: { team } },
        el('div', { class: 'team-head' }, el('h3', { text: team || tr('wall.noTeam') }), counts),
        el(
          'table',
          {},
          el('thead', {}, el('tr', {}, el('th', { text: tr('wall.agent') }), el('th', { text: tr('console.status') }), el('th', { class: 'num', text: tr('wall.load') }), el('th', { text: '' }))),
          rows,
        ),
      ),
    );
  }
}

function renderSnapshot(snapshot) {
  if (!snapshot || typeof snapshot !== 'object') return;
  lastSnapshot = snapshot;
  renderKpis(snapshot);
  renderQueues(snapshot);
  renderService(snapshot);
  renderAgents(snapshot);
  const at = num(snapshot.nowUnixMs) || Date.now();
  $('wall-updated').textContent = tr('wall.updated', { time: formatTime(lang, at) });
  const routers = snapshot.routers || [];
  const missing = snapshot.routersMissing || [];
  const parts = [];
  if (routers.length) parts.push(`${tr('wall.routers')}: ${routers.join(', ')}`);
  if (missing.length) parts.push(`${tr('wall.routersMissing')}: ${missing.join(', ')}`);
  $('routers').textContent = parts.join(' · ');
  $('routers').classList.toggle('error', missing.length > 0);
}

// ---------- actions ----------

async function setAgentStatus(agentId, status, resultNode) {
  try {
    await admin('set-agent-status', { agentId, status });
    resultNode.textContent = tr('wall.done');
    resultNode.className = 'result ok';
  } catch (err) {
    resultNode.textContent = err.message;
    resultNode.className = 'result error';
  }
}

async function forceTransfer(e) {
  e.preventDefault();
  const result = $('ft-result');
  const conversationId = $('ft-conversation').value.trim();
  const kind = $('ft-kind').value;
  const target = $('ft-target').value.trim();
  const body = { conversationId, reason: $('ft-reason').value.trim() };
  if (kind === 'supervisor') body.supervisor = true;
  else body[kind] = target;
  if (!conversationId || (kind !== 'supervisor' && !target)) {
    result.textContent = tr('console.targetMissing');
    result.className = 'result error';
    return;
  }
  try {
    await admin('force-transfer', body);
    result.textContent = tr('wall.done');
    result.className = 'result ok';
  } catch (err) {
    result.textContent = `${err.code}: ${err.message}`;
    result.className = 'result error';
  }
}

// ---------- watching a conversation ----------

function describeEvent(name, payload) {
  switch (name) {
    case 'message': {
      const sender = String(payload.sender || '').replace('SENDER_', '').toLowerCase();
      return `${sender}${payload.author ? ` (${payload.author})` : ''} #${num(payload.seq)}: ${payload.text || ''}`;
    }
    case 'queued':
      return `${payload.department || ''} #${num(payload.position)} ~${clock(payload.estimatedWaitSeconds)}`;
    case 'assigned':
      return `${payload.agentDisplayName || ''} (${payload.agentId || ''})`;
    case 'closed':
      return `${String(payload.outcome || '').replace('CONVERSATION_OUTCOME_', '')} ${payload.reason || ''}`;
    case 'typing':
      return payload.typing ? '…' : '—';
    default:
      return Object.keys(payload).length ? JSON.stringify(payload) : '';
  }
}

function startWatch(e) {
  e.preventDefault();
  stopWatch();
  const id = $('watch-id').value.trim();
  if (!id) return;
  const log = $('watch-log');
  clear(log);
  show(log, true);
  show($('watch-stop'), true);
  watchStream = openStream(joinUrl('', `/v1/admin/conversations/${encodeURIComponent(id)}/watch`), {
    token: () => token,
    onEvent: ({ kind, data }) => {
      let name = kind ? camel(kind) : '';
      let payload = data && name && data[name];
      if (!payload) [name, payload] = oneofCase(data, EVENT_KINDS);
      if (name === 'typing') return;
      const at = num(data && data.atUnixMs) || Date.now();
      log.append(
        el(
          'p',
          { class: 'ev', 'data-testid': 'watch-event', dataset: { kind: name } },
          el('time', { class: 'muted', text: `${formatTime(lang, at)} ` }),
          el('span', { class: 'ev-kind', text: name }),
          el('span', { text: describeEvent(name, payload || {}) }),
        ),
      );
      log.scrollTop = log.scrollHeight;
    },
    onState: (s, detail) => {
      const names = { connecting: 'console.connection.connecting', open: 'console.connection.open', retrying: 'console.connection.retrying', ended: 'wall.watchEnded' };
      $('watch-state').textContent = s === 'failed' ? `${detail.code}: ${detail.message}` : tr(names[s] || 'wall.watchEnded');
      if (s === 'failed' || s === 'ended') show($('watch-stop'), false);
    },
  });
}

function stopWatch() {
  if (watchStream) watchStream.close();
  watchStream = null;
  show($('watch-stop'), false);
}

// ---------- the archive ----------

function archiveHead() {
  for (const head of document.querySelectorAll('.archive-head')) {
    clear(head);
    head.append(
      el(
        'tr',
        {},
        el('th', { text: tr('wall.closedAt') }),
        el('th', { text: tr('wall.department') }),
        el('th', { text: tr('wall.agent') }),
        el('th', { text: tr('wall.comment') }),
        el('th', { class: 'num', text: tr('wall.messages') }),
      ),
    );
  }
}

function archiveRows(tbody, conversations) {
  clear(tbody);
  if (conversations.length === 0) {
    tbody.append(el('tr', {}, el('td', { colspan: '5', class: 'muted', text: tr('wall.none') })));
    return;
  }
  for (const c of conversations) {
    const open = () => showTranscript(c.conversationId);
    tbody.append(
      el(
        'tr',
        {
          class: 'clickable',
          tabindex: '0',
          'data-testid': 'archive-row',
          dataset: { conversationId: c.conversationId, rating: c.rating || '' },
          on: {
            click: open,
            keydown: (e) => {
              if (e.key === 'Enter' || e.key === ' ') {
                e.preventDefault();
                open();
              }
            },
          },
        },
        el('td', { text: num(c.closedAtUnixMs) ? formatDateTime(lang, num(c.closedAtUnixMs)) : '—' }),
        el('td', { text: [c.department, c.language].filter(Boolean).join(' / ') }),
        el('td', { text: c.agentId || '—' }),
        el('td', { text: c.ratingComment || '' }),
        el('td', { class: 'num', text: String(num(c.messages)) }),
      ),
    );
  }
}

async function loadArchive(e) {
  if (e) e.preventDefault();
  const error = $('archive-error');
  error.hidden = true;
  const base = { limit: ARCHIVE_LIMIT };
  const department = $('archive-department').value.trim();
  const language = $('archive-language').value.trim();
  const from = $('archive-from').value;
  if (department) base.department = department;
  if (language) base.language = language;
  if (from) base.fromUnixMs = String(new Date(`${from}T00:00:00`).getTime());
  archiveHead();
  try {
    const [best, worst] = await Promise.all([
      admin('list-conversations', { ...base, rating: 'good' }),
      admin('list-conversations', { ...base, rating: 'bad' }),
    ]);
    // Best: good ratings with a comment first; worst: bad ratings with a comment first.
    const byComment = (a, b) => Number(Boolean(b.ratingComment)) - Number(Boolean(a.ratingComment));
    archiveRows($('archive-best'), (best.conversations || []).slice().sort(byComment));
    archiveRows($('archive-worst'), (worst.conversations || []).slice().sort(byComment));
  } catch (err) {
    error.textContent = `${err.code}: ${err.message}`;
    error.hidden = false;
  }
}

async function showTranscript(conversationId) {
  const box = $('transcript');
  clear(box);
  show(box, true);
  let transcript;
  try {
    transcript = await admin('get-transcript', { conversationId });
  } catch (err) {
    box.append(el('p', { class: 'error', text: `${err.code}: ${err.message}` }));
    return;
  }
  const c = transcript.conversation || {};
  box.append(
    el('h3', { text: `${tr('wall.transcript')} — ${conversationId}` }),
    el('p', {
      class: 'muted',
      text: [c.department, c.language, c.agentId, String(c.outcome || '').replace('CONVERSATION_OUTCOME_', '').toLowerCase(), c.rating ? `${tr('wall.rating')}: ${c.rating}` : '', c.ratingComment ? `“${c.ratingComment}”` : '', num(c.transfers) ? `${tr('wall.transfers')}: ${num(c.transfers)}` : '']
        .filter(Boolean)
        .join(' · '),
    }),
  );
  const log = el('div', { class: 'chat-log', role: 'log' });
  for (const m of transcript.messages || []) {
    const sender = String(m.sender || 'SENDER_SYSTEM').replace('SENDER_', '').toLowerCase();
    log.append(
      el(
        'div',
        { class: `msg from-${sender === 'agent' ? 'agent' : sender}`, 'data-testid': 'transcript-msg', dataset: { sender, seq: String(num(m.seq)) } },
        el('span', { class: 'msg-author', text: `${m.author || sender} · ${num(m.atUnixMs) ? formatTime(lang, num(m.atUnixMs)) : ''}` }),
        el('p', { class: 'msg-text', text: m.text || '' }),
      ),
    );
  }
  box.append(log);
  if ((transcript.notes || []).length) {
    const ul = el('ul', { 'data-testid': 'transcript-notes' });
    for (const n of transcript.notes) ul.append(el('li', { text: n }));
    box.append(el('h4', { text: tr('console.notes') }), ul);
  }
  if (transcript.summary) box.append(el('h4', { text: tr('console.summary') }), el('p', { 'data-testid': 'transcript-summary', text: transcript.summary }));
  box.scrollIntoView({ block: 'nearest' });
}

// ---------- start-up ----------

function setLanguage(next) {
  lang = pickLanguage(next);
  saveJson(localStore(), LANG_KEY, lang);
  $('ui-lang').value = lang;
  applyTexts(document, lang);
  if (lastSnapshot) renderSnapshot(lastSnapshot);
  archiveHead();
}

function init() {
  applyTexts(document, lang);
  $('ui-lang').value = lang;
  $('ui-lang').addEventListener('change', (e) => setLanguage(e.target.value));
  $('wall-token').value = token;
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('wall-token').value.trim();
    saveJson(store, TOKEN_KEY, token || null);
    connect();
    if (token) loadArchive();
  });
  $('wall-disconnect').addEventListener('click', () => {
    disconnect();
    token = '';
    $('wall-token').value = '';
    saveJson(store, TOKEN_KEY, null);
  });
  $('watch-form').addEventListener('submit', startWatch);
  $('watch-stop').addEventListener('click', stopWatch);
  $('ft-form').addEventListener('submit', forceTransfer);
  $('ft-kind').addEventListener('change', () => show($('ft-target-field'), $('ft-kind').value !== 'supervisor'));
  $('sas-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const agentId = $('sas-agent').value.trim();
    if (!agentId) return;
    setAgentStatus(agentId, $('sas-status').value, $('sas-result'));
  });
  $('archive-form').addEventListener('submit', loadArchive);
  const weekAgo = new Date(Date.now() - 7 * 86400000);
  $('archive-from').value = `${weekAgo.getFullYear()}-${String(weekAgo.getMonth() + 1).padStart(2, '0')}-${String(weekAgo.getDate()).padStart(2, '0')}`;
  archiveHead();
  window.addEventListener('online', () => snapshotStream && snapshotStream.reconnectNow());
  if (token) {
    connect();
    loadArchive();
  }
}

init();
