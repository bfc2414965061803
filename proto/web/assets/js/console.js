// Agent console (/console): log in, take offers, chat in several conversations at once.
//
// The desk is `POST /v1/agent/sessions` (login), `GET .../events` (SSE of AgentEvent, resumed
// with Last-Event-ID) and `POST .../commands` (AgentCommand; the answer, `ack` or `error`
// with the same requestId, comes back as an event). The session and the open chats are kept
// in session storage so a reload resumes where it was.
//
// data-testid (static, see console.html): login-form, login-agent, login-password,
// login-id-token, login-submit, login-error, status, connection, agent-name, ui-lang, logout,
// toasts, offer-count, no-offers, offer-list, chat-tabs, layout-tabs, layout-columns, no-chats,
// chat-panels, transfer-dialog (transfer-kind, transfer-target, transfer-reason,
// transfer-warm, transfer-submit, transfer-cancel, transfer-error), escalate-dialog
// (escalate-kind, escalate-phone, escalate-email, escalate-time, escalate-note,
// escalate-submit, escalate-cancel, escalate-error), note-dialog (note-text, note-submit,
// note-cancel, note-error), close-dialog (close-summary, close-submit, close-cancel,
// close-error).
// data-testid (made here; each carries data-conversation-id or data-reservation-id):
// offer (offer-customer, offer-countdown, offer-flags, offer-visitor, offer-history,
// offer-accept, offer-decline, offer-error), flag-returning, flag-recontact, flag-vip,
// flag-transfer, chat-tab (chat-unread), chat (chat-title, chat-info, chat-log, chat-msg with
// data-sender/data-seq/data-state, chat-typing, chat-ended, chat-input, chat-status-note,
// chat-send, canned-list with canned-option, chat-transfer, chat-escalate, chat-note,
// chat-sensitive, chat-close, chat-dismiss, chat-notes).

import { request, openStream, withRetry, newId, oneofCase, camel, joinUrl, ApiError } from './api.js';
import { el, append, clear, show, num, clock, loadJson, saveJson, sessionStore, localStore } from './dom.js';
import { t, pickLanguage, applyTexts, formatTime } from './i18n.js';

const STATE_KEY = 'centralino.console.v1';
const LANG_KEY = 'centralino.uiLang';
/** How long a command waits for its ack before it counts as lost (then retried if idempotent). */
const ACK_TIMEOUT_MS = 20000;
const TYPING_THROTTLE_MS = 2000;
const TYPING_IDLE_MS = 3000;
const TYPING_SHOW_MS = 8000;
const CANNED_DEBOUNCE_MS = 250;
/** An expired offer stays visible (greyed) this long. */
const EXPIRED_LINGER_MS = 4000;

const EVENT_KINDS = ['loggedIn', 'offer', 'offerRevoked', 'assigned', 'message', 'ended', 'status', 'error', 'ack', 'customerTyping'];
const SENDER = { SENDER_CUSTOMER: 'customer', SENDER_AGENT: 'agent', SENDER_SYSTEM: 'system', 1: 'customer', 2: 'agent', 3: 'system' };
const OUTCOMES = {
  CONVERSATION_OUTCOME_COMPLETED: { en: 'completed', it: 'completata' },
  CONVERSATION_OUTCOME_ABANDONED: { en: 'abandoned by the customer', it: 'abbandonata dal cliente' },
  CONVERSATION_OUTCOME_OFFLINE: { en: 'offline message', it: 'messaggio offline' },
  CONVERSATION_OUTCOME_ESCALATED: { en: 'escalated', it: 'escalation' },
  CONVERSATION_OUTCOME_TRANSFERRED: { en: 'transferred', it: 'trasferita' },
};

const $ = (id) => document.getElementById(id);
const store = sessionStore();

let lang = pickLanguage(loadJson(localStore(), LANG_KEY, '') || navigator.language || 'en');
const tr = (key, vars) => t(lang, key, vars);

function freshState() {
  return {
    v: 1,
    sessionId: '',
    sessionToken: '',
    agentId: '',
    displayName: '',
    capacity: 0,
    status: '',
    lastEventId: '',
    offers: {}, // reservationId -> offer + receivedAt
    offerInfo: {}, // conversationId -> the offer that brought it
    chats: {}, // conversationId -> chat
    order: [],
    active: '',
    layout: 'tabs',
  };
}

let state = loadJson(store, STATE_KEY, null);
if (!state || state.v !== 1) state = freshState();
let stream = null;
const pending = new Map(); // requestId -> { resolve, reject, timer }
const views = new Map(); // conversationId -> DOM handles
const baseTitle = document.title;
let audio = null;

function save() {
  saveJson(store, STATE_KEY, state);
}

function outcomeText(outcome) {
  const o = OUTCOMES[outcome];
  return o ? o[lang] || o.en : String(outcome || '').replace('CONVERSATION_OUTCOME_', '').toLowerCase();
}

function toast(text, tone = 'info') {
  const node = el('p', { class: `toast toast-${tone}`, 'data-testid': 'toast', text });
  $('toasts').append(node);
  setTimeout(() => node.remove(), 6000);
}

// ---------- sound and title on a new offer ----------

function unlockAudio() {
  if (audio || typeof AudioContext === 'undefined') return;
  try {
    audio = new AudioContext();
  } catch {
    audio = null;
  }
}

function beep() {
  if (!audio) return;
  try {
    if (audio.state === 'suspended') audio.resume();
    const now = audio.currentTime;
    for (const [offset, freq] of [[0, 880], [0.18, 1175]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, now + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.18);
    }
  } catch {
    // No sound device: the title still changes.
  }
}

function updateTitle() {
  const waiting = Object.values(state.offers).some((o) => !o.autoAccepted && remainingMs(o) > 0);
  const unread = state.order.reduce((n, id) => n + (state.chats[id] ? state.chats[id].unread || 0 : 0), 0);
  if (waiting) document.title = `${tr('console.newOfferTitle')} — ${baseTitle}`;
  else if (unread > 0) document.title = `(${unread}) ${baseTitle}`;
  else document.title = baseTitle;
}

// ---------- commands ----------

function sessionPath(suffix = '') {
  return `/v1/agent/sessions/${encodeURIComponent(state.sessionId)}${suffix}`;
}

/**
 * Sends a desk command and waits for its `ack` (resolved with the Ack) or `error` event
 * (rejected with an ApiError carrying the error's code). `wait: false` only posts it.
 */
async function command(kind, payload, { wait = true, requestId = newId() } = {}) {
  const body = { requestId, [kind]: payload };
  if (!wait) {
    await request('', sessionPath('/commands'), { body, token: state.sessionToken, timeoutMs: 8000 });
    return null;
  }
  const answer = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(requestId);
      reject(new ApiError('no answer from the desk', 'TIMEOUT'));
    }, ACK_TIMEOUT_MS);
    pending.set(requestId, { resolve, reject, timer });
  });
  try {
    await request('', sessionPath('/commands'), { body, token: state.sessionToken });
  } catch (err) {
    const p = pending.get(requestId);
    if (p) {
      clearTimeout(p.timer);
      pending.delete(requestId);
    }
    answer.catch(() => {});
    throw err;
  }
  return answer;
}

function settle(requestId, fn) {
  const p = requestId && pending.get(requestId);
  if (!p) return false;
  clearTimeout(p.timer);
  pending.delete(requestId);
  fn(p);
  return true;
}

// ---------- login / logout ----------

async function login(e) {
  e.preventDefault();
  unlockAudio();
  const agentId = $('login-agent').value.trim();
  const password = $('login-password').value;
  const idToken = $('login-id-token').value.trim();
  const error = $('login-error');
  error.hidden = true;
  const body = {};
  if (idToken) {
    body.idToken = idToken;
    if (agentId) body.agentId = agentId;
  } else {
    if (!agentId || !password) {
      error.textContent = tr('console.loginMissing');
      error.hidden = false;
      return;
    }
    body.agentId = agentId;
    body.password = password;
  }
  $('login-submit').disabled = true;
  try {
    const res = await request('', '/v1/agent/sessions', { body });
    state = freshState();
    state.sessionId = res.sessionId;
    state.sessionToken = res.sessionToken;
    if (res.loggedIn) applyLoggedIn(res.loggedIn);
    save();
    $('login-password').value = '';
    $('login-id-token').value = '';
    showDesk();
    connect();
  } catch (err) {
    error.textContent = tr('console.loginFailed', { reason: err.message });
    error.hidden = false;
  } finally {
    $('login-submit').disabled = false;
  }
}

async function logout() {
  const { sessionId, sessionToken } = state;
  if (stream) stream.close();
  stream = null;
  if (sessionId) {
    try {
      await request('', `/v1/agent/sessions/${encodeURIComponent(sessionId)}`, { method: 'DELETE', token: sessionToken, timeoutMs: 5000 });
    } catch {
      // Gone already: the session ends by itself 60 s after its last reader.
    }
  }
  endSession('');
}

function endSession(message) {
  if (stream) stream.close();
  stream = null;
  for (const [, p] of pending) {
    clearTimeout(p.timer);
    p.reject(new ApiError('logged out', 'CANCELLED'));
  }
  pending.clear();
  state = freshState();
  save();
  views.clear();
  clear($('chat-panels'));
  clear($('chat-tabs'));
  clear($('offer-list'));
  showLogin();
  if (message) {
    $('login-error').textContent = message;
    $('login-error').hidden = false;
  }
  updateTitle();
}

function showLogin() {
  show($('login-view'), true);
  show($('desk-view'), false);
  for (const id of ['status-box', 'logout', 'agent-name', 'connection']) show($(id), false);
  $('login-agent').focus();
}

function showDesk() {
  show($('login-view'), false);
  show($('desk-view'), true);
  for (const id of ['status-box', 'logout', 'agent-name']) show($(id), true);
  renderHeader();
  renderOffers();
  for (const id of state.order) renderChat(id);
  renderTabs();
  renderLayout();
}

function renderHeader() {
  $('agent-name').textContent = state.displayName || state.agentId;
  const select = $('status');
  const status = state.status || 'AGENT_STATUS_UNSPECIFIED';
  select.value = [...select.options].some((o) => o.value === status) ? status : 'AGENT_STATUS_UNSPECIFIED';
  select.dataset.current = state.status || '';
  select.title = tr(`status.${state.status || 'AGENT_STATUS_UNSPECIFIED'}`);
}

function applyLoggedIn(li) {
  state.agentId = li.agentId || state.agentId;
  state.displayName = li.displayName || state.displayName || state.agentId;
  state.capacity = num(li.capacity);
  if (li.status) state.status = li.status;
  for (const id of li.conversationIds || []) ensureChat(id);
}

// ---------- the event stream ----------

function connect() {
  if (stream) stream.close();
  const sessionId = state.sessionId;
  stream = openStream(joinUrl('', sessionPath('/events')), {
    token: () => state.sessionToken,
    lastEventId: state.lastEventId,
    stopKinds: [],
    onEvent: (event) => {
      if (state.sessionId !== sessionId) return;
      onEvent(event);
    },
    onState: (s, detail) => {
      if (state.sessionId !== sessionId) return;
      const conn = $('connection');
      conn.hidden = false;
      conn.dataset.state = s;
      if (s === 'failed') {
        endSession(tr('console.sessionEnded', { reason: detail.message }));
        return;
      }
      if (s === 'open' || s === 'retrying' || s === 'connecting') conn.textContent = tr(`console.connection.${s}`);
    },
  });
}

function onEvent({ id, kind, data }) {
  let name = kind ? camel(kind) : '';
  let payload = data && name && data[name];
  if (!payload) [name, payload] = oneofCase(data, EVENT_KINDS);
  switch (name) {
    case 'loggedIn':
      applyLoggedIn(payload);
      renderHeader();
      for (const cid of state.order) renderChat(cid);
      renderTabs();
      break;
    case 'offer':
      onOffer(payload);
      break;
    case 'offerRevoked':
      if (state.offers[payload.reservationId]) {
        delete state.offers[payload.reservationId];
        if (payload.reason) toast(tr('console.offerRevoked', { reason: payload.reason }));
        renderOffers();
      }
      break;
    case 'assigned':
      onAssigned(payload);
      break;
    case 'message':
      onMessage(payload.conversationId, payload.message || {});
      break;
    case 'ended':
      onEnded(payload);
      break;
    case 'status':
      state.status = payload.status || state.status;
      renderHeader();
      if (payload.reason) toast(tr('console.statusChanged', { status: tr(`status.${state.status}`), reason: payload.reason }));
      break;
    case 'error':
      if (!settle(payload.requestId, (p) => p.reject(new ApiError(payload.message || payload.code, payload.code || 'UNKNOWN')))) {
        toast(`${payload.code || ''} ${payload.message || ''}`.trim(), 'error');
      }
      break;
    case 'ack':
      settle(payload.requestId, (p) => p.resolve(payload));
      break;
    case 'customerTyping':
      showCustomerTyping(payload.conversationId, Boolean(payload.typing));
      break;
    default:
      break;
  }
  if (id && id !== '0') state.lastEventId = id;
  save();
  updateTitle();
}

// ---------- offers ----------

function remainingMs(offer) {
  return num(offer.expiresInMs) - (Date.now() - num(offer.receivedAt));
}

function onOffer(offer) {
  if (!offer.reservationId) return;
  const known = Boolean(state.offers[offer.reservationId]);
  state.offers[offer.reservationId] = { ...offer, receivedAt: known ? state.offers[offer.reservationId].receivedAt : Date.now() };
  if (offer.conversationId) state.offerInfo[offer.conversationId] = offer;
  renderOffers();
  if (!known && !offer.autoAccepted) beep();
}

function flagBadges(offer) {
  const history = offer.history || {};
  const badges = [];
  if (offer.returningCustomer) badges.push(el('span', { class: 'badge badge-returning', 'data-testid': 'flag-returning', text: tr('console.returning') }));
  if (history.recontact) badges.push(el('span', { class: 'badge badge-recontact', 'data-testid': 'flag-recontact', text: tr('console.recontact') }));
  if (history.tier) {
    const vip = history.tier.toLowerCase() === 'vip';
    badges.push(el('span', { class: `badge ${vip ? 'badge-vip' : 'badge-tier'}`, 'data-testid': 'flag-vip', text: vip ? tr('console.vip') : history.tier }));
  }
  if (offer.transfer && offer.transfer.fromAgentId) {
    badges.push(el('span', { class: 'badge badge-transfer', 'data-testid': 'flag-transfer', text: tr('console.transferredFrom', { agent: offer.transfer.fromAgentId }) }));
  }
  return badges;
}

function definitionList(rows) {
  const dl = el('dl', { class: 'facts' });
  for (const [label, value] of rows) {
    if (value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0)) continue;
    const dd = el('dd');
    if (Array.isArray(value)) {
      const ul = el('ul');
      for (const v of value) ul.append(el('li', { text: v }));
      dd.append(ul);
    } else dd.textContent = String(value);
    append(dl, el('dt', { text: label }), dd);
  }
  return dl;
}

function visitorFacts(visitor) {
  const v = visitor || {};
  return definitionList([
    [tr('console.currentPage'), v.currentPage],
    [tr('console.pagesVisited'), (v.pagesVisited || []).join(' → ')],
    [tr('console.referrer'), v.referrer],
    [tr('console.timeOnSite'), v.timeOnSiteSeconds ? clock(v.timeOnSiteSeconds) : ''],
  ]);
}

function historyFacts(offer) {
  const h = offer.history || {};
  return definitionList([
    [tr('console.contacts'), h.contacts ? String(h.contacts) : ''],
    [tr('console.lastAgents'), (h.lastAgents || []).join(', ')],
    [tr('console.lastRating'), h.lastRating],
    [tr('console.lastSummary'), offer.lastSummary],
    [tr('console.summaries'), h.summaries || []],
    [tr('console.notes'), h.notes || []],
    [tr('console.reason'), offer.transfer && offer.transfer.reason],
  ]);
}

function renderOffers() {
  const list = $('offer-list');
  clear(list);
  const offers = Object.values(state.offers).sort((a, b) => num(a.receivedAt) - num(b.receivedAt));
  $('offer-count').textContent = String(offers.filter((o) => !o.autoAccepted).length);
  show($('no-offers'), offers.length === 0);
  for (const offer of offers) {
    const error = el('p', { class: 'error', 'data-testid': 'offer-error', role: 'alert', hidden: true });
    const accept = el('button', {
      type: 'button',
      class: 'button primary',
      'data-testid': 'offer-accept',
      text: tr('console.accept'),
      on: { click: () => acceptOffer(offer, error, accept) },
    });
    const decline = el('button', {
      type: 'button',
      class: 'button secondary',
      'data-testid': 'offer-decline',
      text: tr('console.decline'),
      on: { click: () => declineOffer(offer, error) },
    });
    const countdown = el('span', { class: 'countdown', 'data-testid': 'offer-countdown', dataset: { reservationId: offer.reservationId } });
    const item = el(
      'li',
      { class: 'card offer', 'data-testid': 'offer', dataset: { reservationId: offer.reservationId, conversationId: offer.conversationId || '' } },
      el(
        'div',
        { class: 'offer-head' },
        el('strong', { 'data-testid': 'offer-customer', text: offer.customerDisplayName || offer.conversationId }),
        countdown,
      ),
      el('p', { class: 'muted', text: [offer.department, offer.language, offer.servingLanguage && offer.servingLanguage !== offer.language ? `${tr('console.servingLanguage')} ${offer.servingLanguage}` : ''].filter(Boolean).join(' · ') }),
      el('div', { class: 'badges', 'data-testid': 'offer-flags' }, flagBadges(offer)),
      el('details', { 'data-testid': 'offer-visitor', open: true }, el('summary', { text: tr('console.visitor') }), visitorFacts(offer.visitor)),
      el('details', { 'data-testid': 'offer-history' }, el('summary', { text: tr('console.history') }), historyFacts(offer)),
      error,
      offer.autoAccepted ? el('p', { class: 'muted', text: tr('console.autoAccepted') }) : el('div', { class: 'actions' }, accept, decline),
    );
    list.append(item);
  }
  tickOffers();
}

function tickOffers() {
  let changed = false;
  for (const node of document.querySelectorAll('[data-testid="offer-countdown"]')) {
    const offer = state.offers[node.dataset.reservationId];
    if (!offer) continue;
    const left = remainingMs(offer);
    const card = node.closest('.offer');
    if (offer.autoAccepted) {
      node.textContent = '';
    } else if (left > 0) {
      node.textContent = tr('console.expiresIn', { s: Math.ceil(left / 1000) });
      node.classList.toggle('urgent', left < 5000);
    } else {
      node.textContent = tr('console.expired');
      card.classList.add('expired');
      for (const b of card.querySelectorAll('button')) b.disabled = true;
    }
    if (left < -EXPIRED_LINGER_MS || (offer.autoAccepted && left < -EXPIRED_LINGER_MS)) {
      delete state.offers[offer.reservationId];
      changed = true;
    }
  }
  if (changed) {
    save();
    renderOffers();
  }
  updateTitle();
}

async function acceptOffer(offer, error, button) {
  unlockAudio();
  error.hidden = true;
  button.disabled = true;
  try {
    await command('accept', { reservationId: offer.reservationId });
    delete state.offers[offer.reservationId];
    save();
    renderOffers();
    if (offer.conversationId) activate(offer.conversationId);
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    button.disabled = false;
  }
}

async function declineOffer(offer, error) {
  error.hidden = true;
  try {
    await command('decline', { reservationId: offer.reservationId, reason: 'declined by the agent' });
    delete state.offers[offer.reservationId];
    save();
    renderOffers();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

// ---------- chats ----------

function ensureChat(conversationId) {
  if (!conversationId) return null;
  let chat = state.chats[conversationId];
  if (!chat) {
    const info = state.offerInfo[conversationId] || {};
    chat = {
      conversationId,
      customerName: info.customerDisplayName || '',
      department: info.department || '',
      language: info.language || '',
      servingLanguage: info.servingLanguage || info.language || '',
      offer: info,
      messages: [],
      notes: [],
      unread: 0,
      ended: false,
      outcome: '',
    };
    state.chats[conversationId] = chat;
    state.order.push(conversationId);
    if (!state.active) state.active = conversationId;
  }
  return chat;
}

function onAssigned(payload) {
  const chat = ensureChat(payload.conversationId);
  if (!chat) return;
  chat.ended = false;
  chat.outcome = '';
  for (const m of payload.transcript || []) addMessage(chat, m, false);
  for (const [rid, o] of Object.entries(state.offers)) {
    if (o.conversationId === payload.conversationId) delete state.offers[rid];
  }
  renderOffers();
  renderChat(chat.conversationId);
  renderTabs();
  if (views.get(chat.conversationId) && state.active === chat.conversationId) views.get(chat.conversationId).input.focus();
}

/** Adds or updates a message; returns true when it is new. Deduplicated by seq and messageId. */
function addMessage(chat, m, live) {
  const sender = SENDER[m.sender] || 'system';
  const seq = num(m.seq);
  const existing =
    (seq && chat.messages.find((x) => x.seq === seq)) ||
    (m.messageId && chat.messages.find((x) => x.messageId && x.messageId === m.messageId));
  if (existing) {
    existing.seq = seq || existing.seq;
    if (existing.state) existing.state = 'delivered';
    renderMessage(chat, existing);
    return false;
  }
  const entry = {
    key: m.messageId ? `id:${m.messageId}` : `seq:${seq}`,
    seq,
    messageId: m.messageId || '',
    sender,
    author: m.author || '',
    text: m.text || '',
    at: num(m.atUnixMs) || Date.now(),
    statusNote: Boolean(m.statusNote),
    state: '',
  };
  chat.messages.push(entry);
  renderMessage(chat, entry);
  if (live && sender !== 'agent' && (state.active !== chat.conversationId || document.hidden)) chat.unread = (chat.unread || 0) + 1;
  return true;
}

function onMessage(conversationId, message) {
  const chat = ensureChat(conversationId);
  if (!chat) return;
  if (!views.has(conversationId)) renderChat(conversationId);
  addMessage(chat, message, true);
  if ((SENDER[message.sender] || '') === 'customer') showCustomerTyping(conversationId, false);
  renderTabs();
}

function onEnded(payload) {
  const chat = state.chats[payload.conversationId];
  if (!chat) return;
  chat.ended = true;
  chat.outcome = payload.outcome || '';
  // An ended chat has nobody typing (a last `typing: false` may have been dropped).
  clearTimeout(customerTypingTimers.get(chat.conversationId));
  customerTypingTimers.delete(chat.conversationId);
  const view = views.get(chat.conversationId);
  if (view && view.typing) view.typing.hidden = true;
  for (const m of chat.messages) {
    if (m.state === 'sending' || m.state === 'retrying') m.state = 'failed';
  }
  renderChat(chat.conversationId);
  renderTabs();
}

function activate(conversationId) {
  if (!state.chats[conversationId]) return;
  state.active = conversationId;
  state.chats[conversationId].unread = 0;
  save();
  renderTabs();
  renderLayout();
  updateTitle();
}

function dismiss(conversationId) {
  delete state.chats[conversationId];
  delete state.offerInfo[conversationId];
  state.order = state.order.filter((id) => id !== conversationId);
  const view = views.get(conversationId);
  if (view) view.root.remove();
  views.delete(conversationId);
  if (state.active === conversationId) state.active = state.order[0] || '';
  save();
  renderTabs();
  renderLayout();
}

function renderTabs() {
  const tabs = $('chat-tabs');
  clear(tabs);
  show($('no-chats'), state.order.length === 0);
  for (const id of state.order) {
    const chat = state.chats[id];
    if (!chat) continue;
    const selected = state.active === id;
    const unread = el('span', { class: 'count', 'data-testid': 'chat-unread', hidden: !chat.unread, text: String(chat.unread || 0) });
    const tab = el(
      'button',
      {
        type: 'button',
        role: 'tab',
        id: `tab-${id}`,
        class: `chat-tab${chat.ended ? ' ended' : ''}`,
        'data-testid': 'chat-tab',
        dataset: { conversationId: id },
        'aria-selected': String(selected),
        'aria-controls': `chat-${id}`,
        tabindex: selected ? '0' : '-1',
        on: {
          click: () => activate(id),
          keydown: (e) => {
            const i = state.order.indexOf(id);
            let next = null;
            if (e.key === 'ArrowRight') next = state.order[(i + 1) % state.order.length];
            if (e.key === 'ArrowLeft') next = state.order[(i - 1 + state.order.length) % state.order.length];
            if (next) {
              e.preventDefault();
              activate(next);
              const node = document.getElementById(`tab-${next}`);
              if (node) node.focus();
            }
          },
        },
      },
      el('span', { text: chat.customerName || id.slice(0, 8) }),
      unread,
    );
    tabs.append(tab);
  }
  for (const [id, view] of views) {
    view.root.classList.toggle('active', id === state.active);
    const chat = state.chats[id];
    if (chat) view.root.dataset.unread = String(chat.unread || 0);
  }
  updateTitle();
}

function renderLayout() {
  const panels = $('chat-panels');
  panels.dataset.layout = state.layout;
  $('layout-tabs').setAttribute('aria-pressed', String(state.layout === 'tabs'));
  $('layout-columns').setAttribute('aria-pressed', String(state.layout === 'columns'));
  for (const [id, view] of views) {
    view.root.hidden = state.layout === 'tabs' && id !== state.active;
    view.root.classList.toggle('active', id === state.active);
  }
}

function senderLabel(chat, m) {
  if (m.sender === 'customer') return chat.customerName || tr('console.customer');
  if (m.sender === 'system') return tr('console.system');
  if (m.author === state.agentId) return state.displayName || m.author;
  return m.author || tr('console.agentLabel');
}

function renderMessage(chat, m) {
  const view = views.get(chat.conversationId);
  if (!view) return;
  let node = view.nodes.get(m.key);
  const fresh = !node;
  if (fresh) {
    node = el(
      'div',
      { class: `msg from-${m.sender}${m.author && m.author !== state.agentId && m.sender === 'agent' ? ' from-colleague' : ''}`, 'data-testid': 'chat-msg' },
      el('span', { class: 'msg-author' }),
      el('p', { class: 'msg-text', 'data-testid': 'chat-msg-text' }),
      el('span', { class: 'msg-meta' }, el('time'), el('span', { class: 'msg-state', 'data-testid': 'chat-msg-state' })),
    );
    view.nodes.set(m.key, node);
    view.log.append(node);
  }
  node.dataset.sender = m.sender;
  node.dataset.state = m.state || '';
  if (m.seq) node.dataset.seq = String(m.seq);
  if (m.messageId) node.dataset.messageId = m.messageId;
  node.classList.toggle('status-note', m.statusNote);
  node.querySelector('.msg-author').textContent = senderLabel(chat, m);
  node.querySelector('.msg-text').textContent = m.text;
  const time = node.querySelector('time');
  time.textContent = formatTime(lang, m.at);
  time.dateTime = new Date(m.at).toISOString();
  const labels = { sending: 'console.sending', retrying: 'console.retrying', sent: 'console.sent', delivered: 'console.delivered', failed: 'console.failed' };
  node.querySelector('.msg-state').textContent = m.state ? tr(labels[m.state], { reason: m.error || '' }) : '';
  if (fresh) view.log.scrollTop = view.log.scrollHeight;
}

function button(testid, key, onClick, cls = 'button small') {
  return el('button', { type: 'button', class: cls, 'data-testid': testid, text: tr(key), on: { click: onClick } });
}

/** Builds the chat's panel once, then updates its header and state. */
function renderChat(conversationId) {
  const chat = state.chats[conversationId];
  if (!chat) return;
  let view = views.get(conversationId);
  if (!view) {
    view = { nodes: new Map() };
    view.title = el('h3', { 'data-testid': 'chat-title' });
    view.meta = el('p', { class: 'muted' });
    view.badges = el('div', { class: 'badges' });
    view.info = el('details', { class: 'chat-info', 'data-testid': 'chat-info' });
    view.notes = el('ul', { class: 'notes', 'data-testid': 'chat-notes' });
    view.log = el('div', { class: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'data-testid': 'chat-log', tabindex: '0' });
    view.typing = el('p', { class: 'typing', 'data-testid': 'chat-typing', 'aria-live': 'polite', hidden: true, text: tr('console.customerTyping') });
    view.ended = el('div', { class: 'chat-ended', 'data-testid': 'chat-ended', hidden: true });
    view.canned = el('ul', { class: 'canned-list', role: 'listbox', id: `canned-${conversationId}`, 'data-testid': 'canned-list', 'aria-label': tr('console.canned'), hidden: true });
    view.input = el('textarea', {
      'data-testid': 'chat-input',
      rows: '2',
      maxlength: '8000',
      placeholder: tr('console.composer'),
      'aria-label': tr('console.composer'),
      'aria-controls': `canned-${conversationId}`,
      'aria-autocomplete': 'list',
      on: {
        keydown: (e) => onComposerKey(chat.conversationId, e),
        input: () => onComposerInput(chat.conversationId),
        focus: () => {
          if (state.active !== conversationId) activate(conversationId);
        },
      },
    });
    view.statusNote = el('input', { type: 'checkbox', 'data-testid': 'chat-status-note' });
    view.send = el('button', { type: 'submit', class: 'button primary', 'data-testid': 'chat-send', text: tr('console.send') });
    view.composer = el(
      'form',
      {
        class: 'composer',
        on: {
          submit: (e) => {
            e.preventDefault();
            sendFromComposer(conversationId);
          },
        },
      },
      el('div', { class: 'composer-input' }, view.input, view.canned),
      el('div', { class: 'composer-tools' }, el('label', { class: 'check' }, view.statusNote, ` ${tr('console.statusNote')}`), view.send),
    );
    view.tools = el(
      'div',
      { class: 'chat-tools' },
      button('chat-transfer', 'console.transfer', () => openTransfer(conversationId)),
      button('chat-escalate', 'console.escalate', () => openEscalate(conversationId)),
      button('chat-note', 'console.note', () => openNote(conversationId)),
      button('chat-sensitive', 'console.sensitive', () => markSensitive(conversationId), 'button small warn'),
      button('chat-close', 'console.close', () => openClose(conversationId), 'button small danger'),
    );
    view.dismiss = button('chat-dismiss', 'console.dismiss', () => dismiss(conversationId));
    view.root = el(
      'article',
      {
        class: 'card chat',
        id: `chat-${conversationId}`,
        role: 'tabpanel',
        'aria-labelledby': `tab-${conversationId}`,
        'data-testid': 'chat',
        dataset: { conversationId },
        on: { click: () => state.active !== conversationId && activate(conversationId) },
      },
      el('header', { class: 'chat-head' }, el('div', {}, view.title, view.meta, view.badges), view.tools),
      view.info,
      view.log,
      view.typing,
      view.ended,
      view.composer,
    );
    views.set(conversationId, view);
    $('chat-panels').append(view.root);
    for (const m of chat.messages) renderMessage(chat, m);
    renderLayout();
  }
  const offer = chat.offer || {};
  view.title.textContent = chat.customerName || conversationId;
  view.meta.textContent = [chat.department, chat.language, chat.servingLanguage && chat.servingLanguage !== chat.language ? `${tr('console.servingLanguage')} ${chat.servingLanguage}` : '', conversationId].filter(Boolean).join(' · ');
  clear(view.badges);
  append(view.badges, flagBadges(offer));
  clear(view.info);
  append(view.info, el('summary', { text: `${tr('console.visitor')} / ${tr('console.history')}` }), visitorFacts(offer.visitor), historyFacts(offer), el('h4', { text: tr('console.notes') }), view.notes);
  clear(view.notes);
  for (const n of chat.notes) view.notes.append(el('li', { text: n }));
  view.root.classList.toggle('ended', chat.ended);
  show(view.ended, chat.ended);
  clear(view.ended);
  if (chat.ended) append(view.ended, el('p', { text: tr('console.ended', { outcome: outcomeText(chat.outcome) }) }), view.dismiss);
  show(view.composer, !chat.ended);
  for (const b of view.tools.querySelectorAll('button')) b.disabled = chat.ended;
}

// ---------- composer: send, typing, canned responses ----------

const typingState = new Map(); // conversationId -> { on, last, timer }
const cannedState = new Map(); // conversationId -> { timer, items, index, query }

function sendTyping(conversationId, typing) {
  command('typing', { conversationId, typing }, { wait: false }).catch(() => {});
}

function onComposerInput(conversationId) {
  const view = views.get(conversationId);
  const value = view.input.value;
  // Typing indicator for the customer (throttled; off after idle).
  const ts = typingState.get(conversationId) || { on: false, last: 0, timer: null };
  const now = Date.now();
  if (value && (!ts.on || now - ts.last >= TYPING_THROTTLE_MS)) {
    ts.on = true;
    ts.last = now;
    sendTyping(conversationId, true);
  }
  clearTimeout(ts.timer);
  ts.timer = setTimeout(() => stopTyping(conversationId), TYPING_IDLE_MS);
  typingState.set(conversationId, ts);
  // Canned responses: "/short".
  const cs = cannedState.get(conversationId) || { timer: null, items: [], index: -1, query: '' };
  clearTimeout(cs.timer);
  if (/^\/\S*$/.test(value)) {
    cs.timer = setTimeout(() => findCanned(conversationId, value), CANNED_DEBOUNCE_MS);
  } else {
    closeCanned(conversationId);
  }
  cannedState.set(conversationId, cs);
}

function stopTyping(conversationId) {
  const ts = typingState.get(conversationId);
  if (!ts) return;
  clearTimeout(ts.timer);
  if (ts.on) {
    ts.on = false;
    sendTyping(conversationId, false);
  }
}

async function findCanned(conversationId, query) {
  const chat = state.chats[conversationId];
  const view = views.get(conversationId);
  if (!chat || !view) return;
  let ack;
  try {
    ack = await command('findCanned', { query, department: chat.department || '', language: chat.servingLanguage || chat.language || '' });
  } catch (err) {
    toast(err.message, 'error');
    return;
  }
  if (view.input.value !== query) return; // typed on meanwhile
  const cs = cannedState.get(conversationId) || {};
  cs.items = (ack && ack.canned) || [];
  cs.index = cs.items.length ? 0 : -1;
  cs.query = query;
  cannedState.set(conversationId, cs);
  renderCanned(conversationId);
}

function renderCanned(conversationId) {
  const view = views.get(conversationId);
  const cs = cannedState.get(conversationId);
  clear(view.canned);
  if (!cs || !cs.query) {
    view.canned.hidden = true;
    view.input.removeAttribute('aria-activedescendant');
    return;
  }
  if (cs.items.length === 0) {
    view.canned.append(el('li', { class: 'muted', role: 'presentation', text: tr('console.noCanned', { q: cs.query }) }));
  }
  cs.items.forEach((item, i) => {
    const optionId = `canned-${conversationId}-${i}`;
    view.canned.append(
      el(
        'li',
        {
          id: optionId,
          role: 'option',
          'data-testid': 'canned-option',
          dataset: { shortcut: item.shortcut || '' },
          'aria-selected': String(i === cs.index),
          on: {
            mousedown: (e) => e.preventDefault(),
            click: () => pickCanned(conversationId, i),
          },
        },
        el('strong', { text: item.shortcut || '' }),
        ' ',
        el('span', { text: item.text || '' }),
      ),
    );
  });
  view.canned.hidden = false;
  if (cs.index >= 0) view.input.setAttribute('aria-activedescendant', `canned-${conversationId}-${cs.index}`);
}

function closeCanned(conversationId) {
  const cs = cannedState.get(conversationId);
  if (cs) {
    clearTimeout(cs.timer);
    cs.items = [];
    cs.index = -1;
    cs.query = '';
  }
  const view = views.get(conversationId);
  if (view) {
    clear(view.canned);
    view.canned.hidden = true;
    view.input.removeAttribute('aria-activedescendant');
  }
}

function pickCanned(conversationId, index) {
  const cs = cannedState.get(conversationId);
  const view = views.get(conversationId);
  if (!cs || !cs.items[index]) return;
  view.input.value = cs.items[index].text || '';
  closeCanned(conversationId);
  view.input.focus();
}

function onComposerKey(conversationId, e) {
  const cs = cannedState.get(conversationId);
  const listOpen = cs && cs.query && cs.items.length > 0;
  if (listOpen && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
    e.preventDefault();
    const n = cs.items.length;
    cs.index = (cs.index + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
    renderCanned(conversationId);
    return;
  }
  if (listOpen && (e.key === 'Enter' || e.key === 'Tab') && cs.index >= 0) {
    e.preventDefault();
    pickCanned(conversationId, cs.index);
    return;
  }
  if (e.key === 'Escape' && cs && cs.query) {
    e.preventDefault();
    closeCanned(conversationId);
    return;
  }
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendFromComposer(conversationId);
  }
}

async function sendFromComposer(conversationId) {
  const chat = state.chats[conversationId];
  const view = views.get(conversationId);
  if (!chat || !view || chat.ended) return;
  const text = view.input.value.trim();
  if (!text) return;
  view.input.value = '';
  closeCanned(conversationId);
  stopTyping(conversationId);
  const statusNote = view.statusNote.checked;
  view.statusNote.checked = false;
  const messageId = newId();
  const entry = { key: `id:${messageId}`, seq: 0, messageId, sender: 'agent', author: state.agentId, text, at: Date.now(), statusNote, state: 'sending' };
  chat.messages.push(entry);
  renderMessage(chat, entry);
  save();
  view.input.focus();
  try {
    const ack = await withRetry(
      () => command('send', { conversationId, messageId, text, statusNote }),
      {
        onRetry: () => {
          entry.state = 'retrying';
          renderMessage(chat, entry);
        },
        shouldStop: () => !state.chats[conversationId] || state.chats[conversationId].ended,
      },
    );
    entry.seq = num(ack && ack.seq) || entry.seq;
    // The echo may have come first, under the same seq.
    const twin = chat.messages.find((m) => m !== entry && entry.seq && m.seq === entry.seq);
    if (twin) {
      chat.messages = chat.messages.filter((m) => m !== twin);
      const node = view.nodes.get(twin.key);
      if (node) node.remove();
      view.nodes.delete(twin.key);
      entry.state = 'delivered';
    }
    if (entry.state !== 'delivered') entry.state = 'sent';
  } catch (err) {
    entry.state = 'failed';
    entry.error = err.message;
  }
  save();
  renderMessage(chat, entry);
}

const customerTypingTimers = new Map();

function showCustomerTyping(conversationId, typing) {
  const view = views.get(conversationId);
  if (!view) return;
  clearTimeout(customerTypingTimers.get(conversationId));
  view.typing.hidden = !typing;
  if (typing) customerTypingTimers.set(conversationId, setTimeout(() => { view.typing.hidden = true; }, TYPING_SHOW_MS));
}

// ---------- dialogs: transfer, escalate, note, close; the sensitive-data warning ----------

/**
 * Opens a <dialog>; `run()` is called on confirm and closes the dialog when it succeeds
 * (an error is shown in `errorId` and the dialog stays open).
 */
function runDialog(dialogId, formId, errorId, run) {
  const dialog = $(dialogId);
  const form = $(formId);
  const error = $(errorId);
  error.hidden = true;
  const onSubmit = async (e) => {
    e.preventDefault();
    if (e.submitter && e.submitter.value === 'cancel') {
      dialog.close();
      return;
    }
    error.hidden = true;
    const buttons = form.querySelectorAll('button');
    for (const b of buttons) b.disabled = true;
    try {
      await run();
      dialog.close();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  };
  form.addEventListener('submit', onSubmit);
  dialog.addEventListener('close', () => form.removeEventListener('submit', onSubmit), { once: true });
  dialog.showModal();
}

function syncTransferTarget() {
  const kind = $('transfer-kind').value;
  show($('transfer-target-field'), kind !== 'supervisor');
  const keys = { agentId: 'console.target.agent', department: 'console.target.department', language: 'console.target.language', skill: 'console.target.skill' };
  if (keys[kind]) $('transfer-target-label').textContent = tr(keys[kind]);
}

function openTransfer(conversationId) {
  $('transfer-target').value = '';
  $('transfer-reason').value = '';
  $('transfer-warm').checked = true;
  syncTransferTarget();
  runDialog('transfer-dialog', 'transfer-form', 'transfer-error', async () => {
    const kind = $('transfer-kind').value;
    const target = $('transfer-target').value.trim();
    const body = { conversationId, reason: $('transfer-reason').value.trim(), warm: $('transfer-warm').checked };
    if (kind === 'supervisor') body.supervisor = true;
    else {
      if (!target) throw new Error(tr('console.targetMissing'));
      body[kind] = target;
    }
    await command('transfer', body);
    toast(tr('console.transferDone'));
  });
}

function syncEscalate() {
  const callback = $('escalate-kind').value === 'ESCALATION_KIND_CALLBACK';
  show($('escalate-phone').closest('.field'), callback);
  show($('escalate-time').closest('.field'), callback);
  show($('escalate-email').closest('.field'), !callback);
}

function openEscalate(conversationId) {
  for (const id of ['escalate-phone', 'escalate-email', 'escalate-time', 'escalate-note']) $(id).value = '';
  syncEscalate();
  runDialog('escalate-dialog', 'escalate-form', 'escalate-error', async () => {
    const kind = $('escalate-kind').value;
    const body = {
      conversationId,
      kind,
      phone: $('escalate-phone').value.trim(),
      email: $('escalate-email').value.trim(),
      preferredTime: $('escalate-time').value.trim(),
      note: $('escalate-note').value.trim(),
    };
    if (kind === 'ESCALATION_KIND_CALLBACK' && !body.phone) throw new Error(tr('console.phoneMissing'));
    if (kind === 'ESCALATION_KIND_EMAIL' && !body.email) throw new Error(tr('console.emailMissing'));
    await command('escalate', body);
  });
}

function openNote(conversationId) {
  $('note-text').value = '';
  runDialog('note-dialog', 'note-form', 'note-error', async () => {
    const text = $('note-text').value.trim();
    if (!text) throw new Error(tr('console.noteMissing'));
    await command('note', { conversationId, text });
    const chat = state.chats[conversationId];
    if (chat) {
      chat.notes.push(text);
      save();
      renderChat(conversationId);
    }
    toast(tr('console.noteSaved'));
  });
}

function openClose(conversationId) {
  $('close-summary').value = '';
  runDialog('close-dialog', 'close-form', 'close-error', async () => {
    const summary = $('close-summary').value.trim();
    await command('close', { conversationId, summary });
  });
}

async function markSensitive(conversationId) {
  try {
    await command('markSensitive', { conversationId });
    toast(tr('console.sensitiveDone'));
  } catch (err) {
    toast(err.message, 'error');
  }
}

// ---------- status ----------

async function setStatus() {
  const select = $('status');
  const status = select.value;
  try {
    await command('setStatus', { status });
    state.status = status;
    save();
  } catch (err) {
    toast(err.message, 'error');
  }
  renderHeader();
}

// ---------- start-up ----------

function setLanguage(next) {
  lang = pickLanguage(next);
  saveJson(localStore(), LANG_KEY, lang);
  $('ui-lang').value = lang;
  applyTexts(document, lang);
  const conn = $('connection');
  if (conn.dataset.state && conn.dataset.state !== 'failed' && conn.dataset.state !== 'ended') {
    conn.textContent = tr(`console.connection.${conn.dataset.state}`);
  }
  // Rebuild the generated parts in the new language.
  views.clear();
  clear($('chat-panels'));
  if (state.sessionId) showDesk();
}

function init() {
  applyTexts(document, lang);
  $('ui-lang').value = lang;
  $('ui-lang').addEventListener('change', (e) => setLanguage(e.target.value));
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('status').addEventListener('change', setStatus);
  $('transfer-kind').addEventListener('change', syncTransferTarget);
  $('escalate-kind').addEventListener('change', syncEscalate);
  $('layout-tabs').addEventListener('click', () => {
    state.layout = 'tabs';
    save();
    renderLayout();
  });
  $('layout-columns').addEventListener('click', () => {
    state.layout = 'columns';
    save();
    renderLayout();
  });
  document.addEventListener('pointerdown', unlockAudio, { once: true });
  document.addEventListener('keydown', unlockAudio, { once: true });
  window.addEventListener('focus', () => {
    const chat = state.chats[state.active];
    if (chat && chat.unread) activate(state.active);
    updateTitle();
  });
  window.addEventListener('online', () => stream && stream.reconnectNow());
  setInterval(tickOffers, 500);
  if (state.sessionId && state.sessionToken) {
    showDesk();
    connect();
  } else {
    showLogin();
  }
}

init();
