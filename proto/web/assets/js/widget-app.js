// The chat widget: mounted by /widget.js inside a shadow DOM. See widget.js for the data
// attributes, the data-testid list and the storage keys.
//
// Delivery without loss or duplicates: every outgoing message gets a client `messageId`
// and is kept (state "sending") in session storage until the server answers its `seq`;
// a reload, a network drop or a router failover re-sends it with the same id (the server
// deduplicates). The stream resumes from the last event id kept in session storage, and
// rendered messages are deduplicated by `seq` (and by `messageId` for the customer's own).

import { request, openStream, withRetry, newId, oneofCase, camel, joinUrl } from './api.js';
import { el, append, clear, show, num, loadJson, saveJson, sessionStore, localStore } from './dom.js';
import { t, has, pickLanguage, LANGUAGES, formatWait, formatTime, formatReopening } from './i18n.js';

const STATE_KEY = 'centralino.widget.v1';
const VISITOR_TOKEN_KEY = 'centralino.visitorToken';
const PAGES_KEY = 'centralino.pages';
const SITE_START_KEY = 'centralino.siteStart';
const REFERRER_KEY = 'centralino.referrer';
/** Typing: at most one `typing: true` per this interval while the customer types. */
const TYPING_THROTTLE_MS = 2000;
/** Typing: `typing: false` after this much idle time. */
const TYPING_IDLE_MS = 3000;
/** The agent's typing indicator disappears after this long without news. */
const TYPING_SHOW_MS = 8000;
/** Transcript entries kept in session storage. */
const MAX_ENTRIES = 500;
/** Pages kept in the visitor context. */
const MAX_PAGES = 20;

const EVENT_KINDS = [
  'queued',
  'offered',
  'assigned',
  'message',
  'closed',
  'ratingRequested',
  'requeued',
  'offline',
  'busy',
  'transferred',
  'handedOver',
  'typing',
];

const SENDER = {
  SENDER_CUSTOMER: 'customer',
  SENDER_AGENT: 'agent',
  SENDER_SYSTEM: 'system',
  1: 'customer',
  2: 'agent',
  3: 'system',
};

function freshState(lang, department) {
  return {
    v: 1,
    open: false,
    lang,
    department,
    phase: 'form', // form | waiting | chat | offline | ended
    conversationId: '',
    token: '',
    lastEventId: '',
    servedDepartment: '',
    displayName: '',
    email: '',
    returning: false,
    agentId: '',
    agentName: '',
    queue: null, // { position, wait }
    offered: false,
    busy: null, // { message, wait, options }
    offlineInfo: null, // { message, reopensAt }
    view: '', // '' | callback | message | confirmEnd
    callbackDone: false,
    offlineDone: false,
    ratingRequested: false,
    rated: false,
    unread: 0,
    entries: [],
  };
}

/** Records this page in the visitor context kept for the tab's session. */
function recordVisit(store) {
  const pages = loadJson(store, PAGES_KEY, []);
  const page = location.pathname;
  if (pages[pages.length - 1] !== page) pages.push(page);
  saveJson(store, PAGES_KEY, pages.slice(-MAX_PAGES));
  if (!loadJson(store, SITE_START_KEY, 0)) saveJson(store, SITE_START_KEY, Date.now());
  if (loadJson(store, REFERRER_KEY, null) === null) {
    let ref = '';
    try {
      if (document.referrer && new URL(document.referrer).origin !== location.origin) {
        ref = document.referrer;
      }
    } catch {
      ref = '';
    }
    saveJson(store, REFERRER_KEY, ref.slice(0, 512));
  }
}

function visitorContext(store) {
  const start = num(loadJson(store, SITE_START_KEY, Date.now()));
  return {
    currentPage: location.pathname,
    pagesVisited: loadJson(store, PAGES_KEY, [location.pathname]).map((p) => String(p).slice(0, 512)),
    referrer: String(loadJson(store, REFERRER_KEY, '') || ''),
    timeOnSiteSeconds: Math.max(0, Math.floor((Date.now() - start) / 1000)),
  };
}

function validColor(value) {
  return Boolean(value) && typeof CSS !== 'undefined' && CSS.supports('color', value);
}

/** Mounts the widget (called by /widget.js). */
export function mount({ config = {}, scriptUrl }) {
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', () => mount({ config, scriptUrl }), { once: true });
    return;
  }
  if (document.getElementById('centralino-widget')) return;
  new Widget(config, scriptUrl).start();
}

class Widget {
  constructor(config, scriptUrl) {
    this.config = config;
    this.scriptUrl = scriptUrl;
    this.apiBase = config.apiBase || new URL(scriptUrl).origin;
    if (this.apiBase === location.origin) this.apiBase = '';
    this.store = sessionStore();
    this.local = localStore();
    this.departments = [
      ...new Set(
        (config.departments || `${config.department || 'support'},support,sales`)
          .split(',')
          .map((d) => d.trim())
          .filter(Boolean),
      ),
    ];
    const lang = pickLanguage(
      config.language || document.documentElement.lang || navigator.language || 'en',
    );
    const saved = loadJson(this.store, STATE_KEY, null);
    this.state = saved && saved.v === 1 ? saved : freshState(lang, this.departments[0]);
    this.stream = null;
    this.flushing = false;
    this.typingOn = false;
    this.lastTypingSent = 0;
    this.typingIdleTimer = null;
    this.typingSupported = true;
    this.agentTypingTimer = null;
    this.nodes = new Map();
    this.ratingGood = null;
    this.connection = 'idle';
    recordVisit(this.store);
  }

  // ---------- text and state ----------

  tr(key, vars) {
    return t(this.state.lang, key, vars);
  }

  save() {
    const s = this.state;
    if (s.entries.length > MAX_ENTRIES) s.entries = s.entries.slice(-MAX_ENTRIES);
    saveJson(this.store, STATE_KEY, s);
  }

  get live() {
    return Boolean(this.state.conversationId) && this.state.phase !== 'ended';
  }

  // ---------- start-up ----------

  start() {
    this.host = el('div', { id: 'centralino-widget', 'data-testid': 'centralino-widget' });
    if (validColor(this.config.color)) this.host.style.setProperty('--cw-accent-host', this.config.color);
    document.body.append(this.host);
    this.root = this.host.attachShadow({ mode: 'open' });
    this.build();
    // A conversation still open resumes its stream from the last event id; a closed one only
    // shows its end (and the rating form, when one was asked and not sent yet).
    if (this.live) this.openStream();
    this.flushOutbox();
    window.addEventListener('online', () => {
      if (this.stream) this.stream.reconnectNow();
      this.flushOutbox();
    });
  }

  /** Builds the whole shadow tree from the state (at mount and when the language changes). */
  build() {
    const s = this.state;
    const prev = this.readPrechat();
    clear(this.root);
    this.nodes.clear();
    const position = this.config.position === 'left' ? 'left' : 'right';
    const logo = this.config.logo
      ? el('img', { class: 'cw-logo', src: new URL(this.config.logo, location.href).href, alt: '' })
      : null;
    const title = this.config.title || this.tr('widget.title');

    this.launcher = el(
      'button',
      {
        type: 'button',
        id: 'cw-launcher',
        'data-testid': 'cw-launcher',
        class: 'cw-launcher',
        'aria-controls': 'cw-panel',
        'aria-expanded': String(s.open),
        on: { click: () => this.setOpen(true) },
      },
      logo ? logo.cloneNode() : el('span', { class: 'cw-bubble-icon', 'aria-hidden': 'true' }),
      el('span', { class: 'cw-launcher-label', text: this.tr('widget.launcher') }),
      (this.unreadBadge = el('span', {
        id: 'cw-unread',
        'data-testid': 'cw-unread',
        class: 'cw-unread',
        hidden: true,
      })),
    );

    this.subtitle = el('p', { id: 'cw-subtitle', 'data-testid': 'cw-subtitle', class: 'cw-subtitle' });
    this.endButton = el('button', {
      type: 'button',
      id: 'cw-end',
      'data-testid': 'cw-end',
      class: 'cw-icon-button',
      'aria-label': this.tr('widget.end'),
      title: this.tr('widget.end'),
      text: '×',
      on: { click: () => this.askEnd() },
    });
    const header = el(
      'header',
      { class: 'cw-header' },
      logo,
      el(
        'div',
        { class: 'cw-heading' },
        el('h2', { id: 'cw-title', 'data-testid': 'cw-title', text: title }),
        this.subtitle,
      ),
      el('button', {
        type: 'button',
        id: 'cw-minimise',
        'data-testid': 'cw-minimise',
        class: 'cw-icon-button',
        'aria-label': this.tr('widget.minimise'),
        title: this.tr('widget.minimise'),
        text: '–',
        on: { click: () => this.setOpen(false) },
      }),
      this.endButton,
    );

    this.banner = el('div', {
      id: 'cw-banner',
      'data-testid': 'cw-banner',
      class: 'cw-banner',
      role: 'status',
      hidden: true,
    });

    this.prechat = this.buildPrechat(prev);
    this.queueBox = el(
      'div',
      { id: 'cw-queue', 'data-testid': 'cw-queue', class: 'cw-queue', role: 'status', hidden: true },
      (this.queuePosition = el('p', { id: 'cw-queue-position', 'data-testid': 'cw-queue-position' })),
      (this.queueWait = el('p', { id: 'cw-queue-wait', 'data-testid': 'cw-queue-wait' })),
    );
    this.log = el('div', {
      id: 'cw-log',
      'data-testid': 'cw-log',
      class: 'cw-log',
      role: 'log',
      'aria-live': 'polite',
      'aria-relevant': 'additions',
      tabindex: '0',
      'aria-label': title,
    });
    this.typing = el('p', {
      id: 'cw-typing',
      'data-testid': 'cw-typing',
      class: 'cw-typing',
      'aria-live': 'polite',
      hidden: true,
    });
    this.busyBox = this.buildBusy();
    this.callbackForm = this.buildCallback();
    this.offlineForm = this.buildOffline(prev);
    this.confirmBox = el(
      'div',
      { id: 'cw-confirm-end', 'data-testid': 'cw-confirm-end', class: 'cw-card', role: 'alertdialog', 'aria-labelledby': 'cw-confirm-text', hidden: true },
      el('p', { id: 'cw-confirm-text', text: this.tr('widget.endConfirm') }),
      el(
        'div',
        { class: 'cw-actions' },
        el('button', { type: 'button', id: 'cw-confirm-yes', 'data-testid': 'cw-confirm-yes', class: 'cw-primary', text: this.tr('widget.yes'), on: { click: () => this.endChat() } }),
        el('button', { type: 'button', id: 'cw-confirm-no', 'data-testid': 'cw-confirm-no', class: 'cw-secondary', text: this.tr('widget.no'), on: { click: () => this.setView('') } }),
      ),
    );
    this.ratingForm = this.buildRating();
    this.closedBox = el(
      'div',
      { id: 'cw-closed', 'data-testid': 'cw-closed', class: 'cw-card', hidden: true },
      (this.closedText = el('p', { text: this.tr('widget.closed') })),
      el('button', { type: 'button', id: 'cw-new-chat', 'data-testid': 'cw-new-chat', class: 'cw-secondary', text: this.tr('widget.newChat'), on: { click: () => this.newChat() } }),
    );

    this.input = el('textarea', {
      id: 'cw-input',
      'data-testid': 'cw-input',
      rows: '1',
      maxlength: '4000',
      placeholder: this.tr('widget.composer'),
      'aria-label': this.tr('widget.composer'),
      on: {
        keydown: (e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            this.sendFromComposer();
          }
        },
        input: () => this.onInput(),
      },
    });
    this.composer = el(
      'form',
      {
        id: 'cw-composer',
        'data-testid': 'cw-composer',
        class: 'cw-composer',
        on: {
          submit: (e) => {
            e.preventDefault();
            this.sendFromComposer();
          },
        },
      },
      this.input,
      el('button', { type: 'submit', id: 'cw-send', 'data-testid': 'cw-send', class: 'cw-primary', text: this.tr('widget.send') }),
    );

    this.body = el(
      'div',
      { class: 'cw-body' },
      this.prechat,
      this.queueBox,
      this.log,
      this.typing,
      this.busyBox,
      this.callbackForm,
      this.offlineForm,
      this.confirmBox,
      this.ratingForm,
      this.closedBox,
    );

    this.panel = el(
      'section',
      {
        id: 'cw-panel',
        'data-testid': 'cw-panel',
        class: 'cw-panel',
        role: 'dialog',
        'aria-modal': 'false',
        'aria-labelledby': 'cw-title',
        tabindex: '-1',
        lang: s.lang,
        hidden: !s.open,
        on: {
          keydown: (e) => {
            if (e.key === 'Escape') {
              e.preventDefault();
              if (this.state.view === 'confirmEnd') this.setView('');
              else this.setOpen(false);
            }
          },
        },
      },
      header,
      this.banner,
      this.body,
      this.composer,
    );

    const stylesheet = el('link', { rel: 'stylesheet', href: new URL('../css/widget.css', import.meta.url).href });
    const rootBox = el('div', { class: `cw-root cw-${position}`, dataset: { open: String(s.open) } }, this.launcher, this.panel);
    this.rootBox = rootBox;
    append(this.root, stylesheet, rootBox);
    for (const entry of s.entries) this.renderEntry(entry);
    this.update();
  }

  readPrechat() {
    if (!this.root) return {};
    const value = (id) => {
      const node = this.root.getElementById(id);
      return node ? node.value : undefined;
    };
    return {
      name: value('cw-name'),
      email: value('cw-email'),
      department: value('cw-department'),
      question: value('cw-question'),
      offName: value('cw-offline-name'),
      offEmail: value('cw-offline-email'),
      offPhone: value('cw-offline-phone'),
      offText: value('cw-offline-text'),
    };
  }

  field(id, labelKey, control) {
    control.id = id;
    control.dataset.testid = id;
    return el('div', { class: 'cw-field' }, el('label', { for: id, text: this.tr(labelKey) }), control);
  }

  buildPrechat(prev) {
    const s = this.state;
    const dept = el('select', { name: 'department' });
    for (const d of this.departments) {
      const label = has(s.lang, `widget.dept.${d}`) ? this.tr(`widget.dept.${d}`) : d;
      dept.append(el('option', { value: d, text: label }));
    }
    dept.value = prev.department || s.department || this.departments[0];
    const lang = el('select', {
      name: 'language',
      on: {
        change: (e) => {
          this.state.lang = pickLanguage(e.target.value);
          this.save();
          this.build();
          const again = this.root.getElementById('cw-language');
          if (again) again.focus();
        },
      },
    });
    for (const code of LANGUAGES) lang.append(el('option', { value: code, text: t(code, `lang.${code}`) }));
    lang.value = s.lang;
    this.prechatError = el('p', { id: 'cw-prechat-error', 'data-testid': 'cw-prechat-error', class: 'cw-error', role: 'alert', hidden: true });
    this.startButton = el('button', { type: 'submit', id: 'cw-start', 'data-testid': 'cw-start', class: 'cw-primary', text: this.tr('widget.start') });
    return el(
      'form',
      {
        id: 'cw-prechat',
        'data-testid': 'cw-prechat',
        class: 'cw-form',
        novalidate: true,
        on: {
          submit: (e) => {
            e.preventDefault();
            this.startConversation();
          },
        },
      },
      el('p', { class: 'cw-intro', text: this.tr('widget.intro') }),
      this.field('cw-name', 'widget.name', el('input', { type: 'text', name: 'name', autocomplete: 'name', required: true, maxlength: '100', value: prev.name ?? s.displayName })),
      this.field('cw-email', 'widget.email', el('input', { type: 'email', name: 'email', autocomplete: 'email', maxlength: '200', value: prev.email ?? s.email })),
      this.departments.length > 1 ? this.field('cw-department', 'widget.department', dept) : null,
      this.field('cw-language', 'widget.language', lang),
      this.field('cw-question', 'widget.question', el('textarea', { name: 'question', rows: '2', maxlength: '4000', value: prev.question || '' })),
      this.prechatError,
      el('div', { class: 'cw-actions' }, this.startButton),
    );
  }

  buildBusy() {
    const option = (id, key, fn) =>
      el('button', { type: 'button', id, 'data-testid': id, class: 'cw-secondary', text: this.tr(key), on: { click: fn } });
    return el(
      'div',
      { id: 'cw-busy', 'data-testid': 'cw-busy', class: 'cw-card', role: 'region', 'aria-labelledby': 'cw-busy-title', hidden: true },
      el('h3', { id: 'cw-busy-title', text: this.tr('widget.busyTitle') }),
      (this.busyText = el('p', { id: 'cw-busy-text', 'data-testid': 'cw-busy-text' })),
      el(
        'div',
        { class: 'cw-actions cw-stack' },
        (this.optWait = option('cw-opt-wait', 'widget.keepWaiting', () => {
          this.state.busy = null;
          this.save();
          this.update();
          this.input.focus();
        })),
        (this.optCallback = option('cw-opt-callback', 'widget.callMe', () => this.setView('callback'))),
        (this.optMessage = option('cw-opt-message', 'widget.leaveMessage', () => this.setView('message'))),
      ),
    );
  }

  buildCallback() {
    this.callbackError = el('p', { id: 'cw-callback-error', 'data-testid': 'cw-callback-error', class: 'cw-error', role: 'alert', hidden: true });
    this.callbackDoneText = el('p', { id: 'cw-callback-done', 'data-testid': 'cw-callback-done', class: 'cw-success', role: 'status', text: this.tr('widget.callbackDone'), hidden: true });
    this.callbackFields = el(
      'div',
      {},
      this.field('cw-callback-phone', 'widget.phone', el('input', { type: 'tel', autocomplete: 'tel', required: true, maxlength: '40' })),
      this.field('cw-callback-time', 'widget.preferredTime', el('input', { type: 'text', maxlength: '200' })),
      this.callbackError,
      el(
        'div',
        { class: 'cw-actions' },
        el('button', { type: 'submit', id: 'cw-callback-send', 'data-testid': 'cw-callback-send', class: 'cw-primary', text: this.tr('widget.callbackSend') }),
        el('button', { type: 'button', id: 'cw-callback-cancel', 'data-testid': 'cw-callback-cancel', class: 'cw-secondary', text: this.tr('widget.cancel'), on: { click: () => this.setView('') } }),
      ),
    );
    return el(
      'form',
      {
        id: 'cw-callback',
        'data-testid': 'cw-callback',
        class: 'cw-card cw-form',
        novalidate: true,
        'aria-labelledby': 'cw-callback-title',
        hidden: true,
        on: {
          submit: (e) => {
            e.preventDefault();
            this.requestCallback();
          },
        },
      },
      el('h3', { id: 'cw-callback-title', text: this.tr('widget.callbackTitle') }),
      this.callbackFields,
      this.callbackDoneText,
    );
  }

  buildOffline(prev) {
    const s = this.state;
    this.offlineTitle = el('h3', { id: 'cw-offline-title', 'data-testid': 'cw-offline-title' });
    this.offlineReopens = el('p', { id: 'cw-offline-reopens', 'data-testid': 'cw-offline-reopens', hidden: true });
    this.offlineNotice = el('p', { class: 'cw-muted' });
    this.offlineError = el('p', { id: 'cw-offline-error', 'data-testid': 'cw-offline-error', class: 'cw-error', role: 'alert', hidden: true });
    this.offlineDoneText = el('p', { id: 'cw-offline-done', 'data-testid': 'cw-offline-done', class: 'cw-success', role: 'status', text: this.tr('widget.offlineDone'), hidden: true });
    this.offlineCancel = el('button', { type: 'button', id: 'cw-offline-cancel', 'data-testid': 'cw-offline-cancel', class: 'cw-secondary', text: this.tr('widget.cancel'), on: { click: () => this.setView('') } });
    this.offlineFields = el(
      'div',
      {},
      el('p', { text: this.tr('widget.offlineIntro') }),
      this.field('cw-offline-name', 'widget.name', el('input', { type: 'text', autocomplete: 'name', maxlength: '100', value: prev.offName ?? s.displayName })),
      this.field('cw-offline-email', 'widget.email', el('input', { type: 'email', autocomplete: 'email', maxlength: '200', value: prev.offEmail ?? s.email })),
      this.field('cw-offline-phone', 'widget.phone', el('input', { type: 'tel', autocomplete: 'tel', maxlength: '40', value: prev.offPhone || '' })),
      this.field('cw-offline-text', 'widget.message', el('textarea', { rows: '4', maxlength: '4000', required: true, value: prev.offText || '' })),
      this.offlineError,
      el(
        'div',
        { class: 'cw-actions' },
        el('button', { type: 'submit', id: 'cw-offline-send', 'data-testid': 'cw-offline-send', class: 'cw-primary', text: this.tr('widget.offlineSend') }),
        this.offlineCancel,
      ),
    );
    return el(
      'form',
      {
        id: 'cw-offline',
        'data-testid': 'cw-offline',
        class: 'cw-card cw-form',
        novalidate: true,
        'aria-labelledby': 'cw-offline-title',
        hidden: true,
        on: {
          submit: (e) => {
            e.preventDefault();
            this.leaveOfflineMessage();
          },
        },
      },
      this.offlineTitle,
      this.offlineReopens,
      this.offlineNotice,
      this.offlineFields,
      this.offlineDoneText,
    );
  }

  buildRating() {
    const choice = (id, key, good) =>
      el('button', {
        type: 'button',
        id,
        'data-testid': id,
        class: `cw-rate ${good ? 'cw-rate-good' : 'cw-rate-bad'}`,
        'aria-pressed': 'false',
        on: {
          click: () => {
            this.ratingGood = good;
            this.rateGood.setAttribute('aria-pressed', String(good));
            this.rateBad.setAttribute('aria-pressed', String(!good));
          },
        },
        text: `${good ? '👍' : '👎'} ${this.tr(key)}`,
      });
    this.rateGood = choice('cw-rate-good', 'widget.good', true);
    this.rateBad = choice('cw-rate-bad', 'widget.bad', false);
    this.ratingError = el('p', { id: 'cw-rating-error', 'data-testid': 'cw-rating-error', class: 'cw-error', role: 'alert', hidden: true });
    this.ratingDoneText = el('p', { id: 'cw-rating-done', 'data-testid': 'cw-rating-done', class: 'cw-success', role: 'status', text: this.tr('widget.ratingDone'), hidden: true });
    this.ratingFields = el(
      'div',
      {},
      el('div', { class: 'cw-actions', role: 'group', 'aria-labelledby': 'cw-rating-title' }, this.rateGood, this.rateBad),
      this.field('cw-rating-comment', 'widget.comment', el('textarea', { rows: '2', maxlength: '2000' })),
      this.ratingError,
      el('div', { class: 'cw-actions' }, el('button', { type: 'submit', id: 'cw-rating-send', 'data-testid': 'cw-rating-send', class: 'cw-primary', text: this.tr('widget.rate') })),
    );
    return el(
      'form',
      {
        id: 'cw-rating',
        'data-testid': 'cw-rating',
        class: 'cw-card cw-form',
        novalidate: true,
        'aria-labelledby': 'cw-rating-title',
        hidden: true,
        on: {
          submit: (e) => {
            e.preventDefault();
            this.rate();
          },
        },
      },
      el('h3', { id: 'cw-rating-title', text: this.tr('widget.ratingTitle') }),
      this.ratingFields,
      this.ratingDoneText,
    );
  }

  // ---------- rendering ----------

  /** Updates everything that depends on the state (visibility, queue, header, banner). */
  update() {
    const focused = this.root.activeElement;
    this.render();
    // The focused control was just hidden (a form sent, the chat ended): move focus on
    // inside the panel, so the keyboard (Escape, Tab) keeps working.
    if (focused && focused.closest('[hidden]') && this.state.open) this.focusFirst();
  }

  render() {
    const s = this.state;
    this.rootBox.dataset.open = String(s.open);
    this.panel.hidden = !s.open;
    this.launcher.setAttribute('aria-expanded', String(s.open));
    this.unreadBadge.hidden = s.open || s.unread === 0;
    this.unreadBadge.textContent = String(s.unread);
    this.unreadBadge.setAttribute('aria-label', s.unread === 1 ? this.tr('widget.unreadOne') : String(s.unread));

    const inForm = s.phase === 'form';
    show(this.prechat, inForm);
    show(this.endButton, this.live);

    // Header line.
    clear(this.subtitle);
    if (s.agentName && s.phase === 'chat') {
      append(this.subtitle, el('span', { id: 'cw-agent-name', 'data-testid': 'cw-agent-name', text: s.agentName }));
    } else if (s.phase === 'waiting') {
      this.subtitle.textContent = s.offered ? this.tr('widget.offered') : this.tr('widget.queued', { position: s.queue ? s.queue.position : '…' });
    }

    // Queue box.
    const queued = s.phase === 'waiting' && !s.offlineInfo;
    show(this.queueBox, queued);
    if (queued) {
      if (s.offered) {
        this.queuePosition.textContent = this.tr('widget.offered');
        this.queueWait.textContent = '';
      } else if (s.queue) {
        this.queuePosition.textContent = this.tr('widget.queued', { position: s.queue.position });
        this.queueWait.textContent = s.queue.wait > 0 ? this.tr('widget.queuedWait', { wait: formatWait(s.lang, s.queue.wait) }) : '';
      } else {
        this.queuePosition.textContent = this.tr('widget.starting');
        this.queueWait.textContent = '';
      }
    }

    // An out-of-hours conversation without messages shows just its form.
    const hasMessages = s.entries.some((e) => e.type === 'msg');
    const logShown = !inForm && (hasMessages || !s.offlineInfo);
    show(this.log, logShown);

    // Busy alternatives.
    const busy = Boolean(s.busy) && s.phase === 'waiting' && !s.view;
    show(this.busyBox, busy);
    if (busy) {
      const opts = s.busy.options && s.busy.options.length ? s.busy.options : ['wait', 'callback', 'message'];
      show(this.optWait, opts.includes('wait'));
      show(this.optCallback, opts.includes('callback'));
      show(this.optMessage, opts.includes('message'));
      const parts = [];
      if (s.busy.message) parts.push(s.busy.message);
      if (s.busy.wait > 0) parts.push(this.tr('widget.busyWait', { wait: formatWait(s.lang, s.busy.wait) }));
      this.busyText.textContent = parts.join(' ');
    }

    // Callback form.
    show(this.callbackForm, s.view === 'callback' || s.callbackDone);
    show(this.callbackFields, !s.callbackDone);
    show(this.callbackDoneText, s.callbackDone);

    // Offline / leave a message.
    const offline = s.phase === 'offline' || s.view === 'message' || s.offlineDone;
    show(this.offlineForm, offline);
    if (offline) {
      const outOfHours = Boolean(s.offlineInfo);
      this.offlineTitle.textContent = outOfHours ? this.tr('widget.offlineTitle') : this.tr('widget.leaveMessage');
      const reopens = s.offlineInfo && num(s.offlineInfo.reopensAt);
      show(this.offlineReopens, Boolean(reopens));
      if (reopens) {
        this.offlineReopens.textContent = this.tr('widget.offlineReopens', { when: formatReopening(s.lang, reopens) });
        this.offlineReopens.dataset.reopensAtUnixMs = String(reopens);
      }
      this.offlineNotice.textContent = (s.offlineInfo && s.offlineInfo.message) || '';
      show(this.offlineNotice, Boolean(this.offlineNotice.textContent));
      show(this.offlineFields, !s.offlineDone);
      show(this.offlineDoneText, s.offlineDone);
      show(this.offlineCancel, s.phase !== 'offline');
    }

    show(this.confirmBox, s.view === 'confirmEnd' && this.live);

    // End of the conversation.
    const ended = s.phase === 'ended';
    show(this.ratingForm, ended && s.ratingRequested);
    show(this.ratingFields, !s.rated);
    show(this.ratingDoneText, s.rated);
    show(this.closedBox, ended);
    show(this.closedText, !logShown);

    // Composer.
    const canWrite = this.live && (s.phase === 'waiting' || s.phase === 'chat');
    show(this.composer, !inForm && s.phase !== 'offline' && !ended);
    this.input.disabled = !canWrite;
    this.composer.querySelector('button').disabled = !canWrite;

    // Banner.
    if (this.connection === 'retrying' && this.live) this.setBanner(this.tr('widget.reconnecting'), 'warn');
    else if (this.banner.dataset.tone === 'warn') this.setBanner('', '');
  }

  setBanner(text, tone) {
    this.banner.textContent = text;
    this.banner.dataset.tone = tone || '';
    this.banner.hidden = !text;
  }

  senderLabel(entry) {
    if (entry.sender === 'customer') return this.tr('widget.you');
    if (entry.sender === 'system') return this.tr('widget.system');
    if (entry.author && entry.author === this.state.agentId && this.state.agentName) return this.state.agentName;
    return entry.authorName || entry.author || this.tr('widget.agent');
  }

  stateLabel(entry) {
    switch (entry.state) {
      case 'sending':
        return this.tr('widget.sending');
      case 'retrying':
        return this.tr('widget.retrying');
      case 'sent':
        return `✓ ${this.tr('widget.sent')}`;
      case 'delivered':
        return `✓✓ ${this.tr('widget.delivered')}`;
      case 'failed':
        return this.tr('widget.failed', { reason: entry.error || '' });
      default:
        return '';
    }
  }

  /** Renders (or re-renders in place) one transcript entry. */
  renderEntry(entry) {
    let node = this.nodes.get(entry.key);
    if (entry.type === 'notice') {
      if (node) return;
      node = el('p', {
        class: `cw-notice cw-tone-${entry.tone || 'info'}`,
        'data-testid': entry.testid || 'cw-notice',
        id: entry.testid && entry.testid !== 'cw-notice' ? entry.testid : null,
        text: entry.text,
      });
      this.nodes.set(entry.key, node);
      this.log.append(node);
      this.scrollLog();
      return;
    }
    const fresh = !node;
    if (fresh) {
      node = el(
        'div',
        { class: `cw-msg cw-from-${entry.sender}`, 'data-testid': 'cw-msg' },
        el('span', { class: 'cw-msg-author' }),
        el('p', { class: 'cw-msg-text', 'data-testid': 'cw-msg-text' }),
        el('span', { class: 'cw-msg-meta' }, el('time', { class: 'cw-msg-time' }), el('span', { class: 'cw-msg-state', 'data-testid': 'cw-msg-state' })),
      );
      this.nodes.set(entry.key, node);
      this.log.append(node);
    }
    node.dataset.sender = entry.sender;
    node.dataset.state = entry.state || '';
    if (entry.seq) node.dataset.seq = String(entry.seq);
    if (entry.messageId) node.dataset.messageId = entry.messageId;
    node.classList.toggle('cw-status-note', Boolean(entry.statusNote));
    node.querySelector('.cw-msg-author').textContent = this.senderLabel(entry);
    node.querySelector('.cw-msg-text').textContent = entry.text;
    const time = node.querySelector('.cw-msg-time');
    if (entry.at) {
      time.textContent = formatTime(this.state.lang, entry.at);
      time.dateTime = new Date(Number(entry.at)).toISOString();
    }
    node.querySelector('.cw-msg-state').textContent = entry.sender === 'customer' ? this.stateLabel(entry) : '';
    if (fresh) this.scrollLog();
  }

  scrollLog() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  notice(key, text, tone = 'info', testid = 'cw-notice') {
    if (this.state.entries.some((e) => e.key === key)) return;
    const entry = { key, type: 'notice', text, tone, testid };
    this.state.entries.push(entry);
    this.renderEntry(entry);
  }

  setOpen(open) {
    this.state.open = open;
    if (open) this.state.unread = 0;
    this.save();
    this.update();
    if (open) this.focusFirst();
    else this.launcher.focus();
  }

  setView(view) {
    this.state.view = view;
    this.save();
    this.update();
    this.focusFirst();
  }

  focusFirst() {
    const candidates = [this.confirmBox, this.callbackForm, this.offlineForm, this.ratingForm, this.prechat, this.busyBox, this.composer, this.closedBox];
    for (const box of candidates) {
      if (box.hidden) continue;
      const target = box.querySelector('input:not([disabled]):not([hidden]), textarea:not([disabled]), select, button:not([disabled])');
      if (target && !target.closest('[hidden]')) {
        target.focus();
        return;
      }
    }
    this.panel.focus();
  }

  // ---------- actions ----------

  async startConversation() {
    const s = this.state;
    const name = this.root.getElementById('cw-name').value.trim();
    const email = this.root.getElementById('cw-email').value.trim();
    const deptSelect = this.root.getElementById('cw-department');
    const department = deptSelect ? deptSelect.value : this.departments[0];
    const question = this.root.getElementById('cw-question').value.trim();
    const error = (key) => {
      this.prechatError.textContent = this.tr(key);
      this.prechatError.hidden = false;
    };
    this.prechatError.hidden = true;
    if (!name) {
      error('widget.nameRequired');
      this.root.getElementById('cw-name').focus();
      return;
    }
    if (email && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) {
      error('widget.emailInvalid');
      this.root.getElementById('cw-email').focus();
      return;
    }
    const body = {
      department,
      language: s.lang,
      displayName: name,
      visitor: visitorContext(this.store),
    };
    if (this.config.identityToken) {
      body.identityToken = this.config.identityToken;
      if (this.config.customerId) body.customerId = this.config.customerId;
    } else {
      const visitorToken = loadJson(this.local, VISITOR_TOKEN_KEY, '');
      if (visitorToken) body.visitorToken = visitorToken;
    }
    this.startButton.disabled = true;
    this.startButton.textContent = this.tr('widget.starting');
    let res;
    try {
      res = await request(this.apiBase, '/v1/conversations', { body });
    } catch (err) {
      this.prechatError.textContent = this.tr('widget.error', { reason: err.message });
      this.prechatError.hidden = false;
      this.startButton.disabled = false;
      this.startButton.textContent = this.tr('widget.start');
      return;
    }
    if (res.visitorToken) saveJson(this.local, VISITOR_TOKEN_KEY, res.visitorToken);
    Object.assign(s, freshState(s.lang, department), {
      open: true,
      conversationId: res.conversationId,
      token: res.token,
      servedDepartment: res.department || department,
      displayName: name,
      email,
      returning: Boolean(res.returningCustomer),
      phase: res.offline ? 'offline' : 'waiting',
      offlineInfo: res.offline ? { message: '', reopensAt: num(res.reopensAtUnixMs) } : null,
    });
    this.nodes.clear();
    clear(this.log);
    if (s.returning) this.notice('welcome', this.tr('widget.welcomeBack', { name }), 'good', 'cw-welcome');
    if (question && !res.offline) this.queueMessage(question);
    if (res.offline && question) {
      const text = this.root.getElementById('cw-offline-text');
      if (text && !text.value) text.value = question;
    }
    this.save();
    this.startButton.disabled = false;
    this.startButton.textContent = this.tr('widget.start');
    this.update();
    this.openStream();
    this.flushOutbox();
    this.focusFirst();
  }

  convPath(suffix) {
    return `/v1/conversations/${encodeURIComponent(this.state.conversationId)}${suffix}`;
  }

  sendFromComposer() {
    const text = this.input.value.trim();
    if (!text || this.input.disabled) return;
    this.input.value = '';
    this.stopTyping();
    this.queueMessage(text);
    this.save();
    this.flushOutbox();
    this.input.focus();
  }

  queueMessage(text) {
    const messageId = newId();
    const entry = {
      key: `id:${messageId}`,
      type: 'msg',
      sender: 'customer',
      messageId,
      text,
      at: Date.now(),
      state: 'sending',
      seq: 0,
    };
    this.state.entries.push(entry);
    this.renderEntry(entry);
  }

  /** Sends the pending messages one by one, in order, retrying with the same message id. */
  async flushOutbox() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (;;) {
        const s = this.state;
        if (!this.live) break;
        const entry = s.entries.find((e) => e.type === 'msg' && e.sender === 'customer' && (e.state === 'sending' || e.state === 'retrying'));
        if (!entry) break;
        const conversationId = s.conversationId;
        try {
          const res = await withRetry(
            () =>
              request(this.apiBase, this.convPath('/messages'), {
                body: { messageId: entry.messageId, text: entry.text },
                token: s.token,
              }),
            {
              onRetry: () => {
                if (entry.state !== 'retrying') {
                  entry.state = 'retrying';
                  this.save();
                  this.renderEntry(entry);
                }
              },
              shouldStop: () => this.state.conversationId !== conversationId || !this.live,
            },
          );
          if (this.state.conversationId !== conversationId) break;
          entry.seq = num(res.seq);
          // The stream may have shown the message already under the same seq.
          const twin = s.entries.find((e) => e !== entry && e.type === 'msg' && entry.seq && e.seq === entry.seq);
          if (twin) this.dropEntry(twin);
          if (entry.state !== 'delivered') entry.state = twin ? 'delivered' : 'sent';
        } catch (err) {
          if (this.state.conversationId !== conversationId) break;
          entry.state = 'failed';
          entry.error = err.message;
        }
        this.save();
        this.renderEntry(entry);
      }
    } finally {
      this.flushing = false;
    }
  }

  dropEntry(entry) {
    const s = this.state;
    s.entries = s.entries.filter((e) => e !== entry);
    const node = this.nodes.get(entry.key);
    if (node) node.remove();
    this.nodes.delete(entry.key);
  }

  onInput() {
    if (!this.live || !this.typingSupported) return;
    const now = Date.now();
    if (!this.typingOn || now - this.lastTypingSent >= TYPING_THROTTLE_MS) {
      this.typingOn = true;
      this.lastTypingSent = now;
      this.sendTyping(true);
    }
    clearTimeout(this.typingIdleTimer);
    this.typingIdleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingIdleTimer);
    if (this.typingOn) {
      this.typingOn = false;
      this.sendTyping(false);
    }
  }

  sendTyping(typing) {
    if (!this.live) return;
    request(this.apiBase, this.convPath('/typing'), { body: { typing }, token: this.state.token, timeoutMs: 5000 }).catch((err) => {
      // An older node without typing: stop asking.
      if (err.code === 'NOT_FOUND' || err.code === 'UNIMPLEMENTED') this.typingSupported = false;
    });
  }

  askEnd() {
    if (!this.live) return;
    this.setView('confirmEnd');
  }

  async endChat() {
    const s = this.state;
    s.view = '';
    this.stopTyping();
    try {
      await withRetry(() => request(this.apiBase, this.convPath('/close'), { body: {}, token: s.token }), { maxAttempts: 4 });
    } catch (err) {
      if (err.code !== 'FAILED_PRECONDITION' && err.code !== 'NOT_FOUND') {
        this.setBanner(this.tr('widget.error', { reason: err.message }), 'error');
        this.update();
        return;
      }
    }
    this.markEnded();
  }

  markEnded() {
    const s = this.state;
    if (s.phase === 'ended') return;
    s.phase = 'ended';
    s.view = '';
    s.busy = null;
    for (const e of s.entries) {
      if (e.type === 'msg' && (e.state === 'sending' || e.state === 'retrying')) {
        e.state = 'failed';
        e.error = this.tr('widget.closed');
        this.renderEntry(e);
      }
    }
    this.showTyping(false);
    this.stopTyping();
    this.save();
    this.update();
  }

  newChat() {
    const s = this.state;
    if (this.stream) this.stream.close();
    this.stream = null;
    const keep = { displayName: s.displayName, email: s.email };
    this.state = Object.assign(freshState(s.lang, s.department), keep, { open: true });
    this.save();
    this.build();
    this.focusFirst();
  }

  async requestCallback() {
    const phone = this.root.getElementById('cw-callback-phone').value.trim();
    const preferredTime = this.root.getElementById('cw-callback-time').value.trim();
    this.callbackError.hidden = true;
    if (!phone) {
      this.callbackError.textContent = this.tr('widget.phoneRequired');
      this.callbackError.hidden = false;
      this.root.getElementById('cw-callback-phone').focus();
      return;
    }
    try {
      await withRetry(() => request(this.apiBase, this.convPath('/callback'), { body: { phone, preferredTime }, token: this.state.token }), { maxAttempts: 4 });
    } catch (err) {
      this.callbackError.textContent = this.tr('widget.error', { reason: err.message });
      this.callbackError.hidden = false;
      return;
    }
    this.state.callbackDone = true;
    this.state.view = '';
    this.state.busy = null;
    this.save();
    this.update();
  }

  async leaveOfflineMessage() {
    const value = (id) => this.root.getElementById(id).value.trim();
    const body = {
      name: value('cw-offline-name'),
      email: value('cw-offline-email'),
      phone: value('cw-offline-phone'),
      text: value('cw-offline-text'),
    };
    this.offlineError.hidden = true;
    const fail = (text, focusId) => {
      this.offlineError.textContent = text;
      this.offlineError.hidden = false;
      if (focusId) this.root.getElementById(focusId).focus();
    };
    if (!body.text) return fail(this.tr('widget.messageRequired'), 'cw-offline-text');
    if (!body.email && !body.phone) return fail(this.tr('widget.contactRequired'), 'cw-offline-email');
    if (body.email && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(body.email)) return fail(this.tr('widget.emailInvalid'), 'cw-offline-email');
    try {
      await withRetry(() => request(this.apiBase, this.convPath('/offline-message'), { body, token: this.state.token }), { maxAttempts: 4 });
    } catch (err) {
      return fail(this.tr('widget.error', { reason: err.message }));
    }
    this.state.offlineDone = true;
    this.state.view = '';
    this.state.busy = null;
    this.save();
    this.update();
    return undefined;
  }

  async rate() {
    this.ratingError.hidden = true;
    if (this.ratingGood === null) {
      this.ratingError.textContent = this.tr('widget.ratingTitle');
      this.ratingError.hidden = false;
      this.rateGood.focus();
      return;
    }
    const comment = this.root.getElementById('cw-rating-comment').value.trim();
    try {
      await withRetry(
        () => request(this.apiBase, this.convPath('/rating'), { body: { good: this.ratingGood, comment }, token: this.state.token }),
        { maxAttempts: 4 },
      );
    } catch (err) {
      // Rated already (e.g. from before a reload): the rating stands.
      if (err.code !== 'FAILED_PRECONDITION' && err.code !== 'ALREADY_EXISTS') {
        this.ratingError.textContent = this.tr('widget.error', { reason: err.message });
        this.ratingError.hidden = false;
        return;
      }
    }
    this.state.rated = true;
    this.save();
    this.update();
    this.root.getElementById('cw-new-chat').focus();
  }

  // ---------- the event stream ----------

  openStream() {
    const s = this.state;
    if (this.stream) this.stream.close();
    const conversationId = s.conversationId;
    this.stream = openStream(joinUrl(this.apiBase, this.convPath('/events')), {
      token: () => this.state.token,
      lastEventId: s.lastEventId,
      stopKinds: ['closed', 'rating_requested'],
      isFatal: (err, attempt) =>
        ['UNAUTHENTICATED', 'PERMISSION_DENIED', 'INVALID_ARGUMENT'].includes(err.code) ||
        (err.code === 'NOT_FOUND' && attempt >= 4),
      onEvent: (event) => {
        if (this.state.conversationId !== conversationId) return;
        this.onEvent(event);
      },
      onState: (state, detail) => {
        if (this.state.conversationId !== conversationId) return;
        this.connection = state;
        if (state === 'open') {
          this.setBanner('', '');
          this.flushOutbox();
        }
        if (state === 'failed') {
          this.setBanner(this.tr('widget.error', { reason: detail.message }), 'error');
          this.markEnded();
        }
        this.update();
      },
    });
  }

  onEvent({ id, kind, data }) {
    const s = this.state;
    let name = kind ? camel(kind) : '';
    let payload = data && name && data[name];
    if (!payload) [name, payload] = oneofCase(data, EVENT_KINDS);
    const eventId = id && id !== '0' ? id : (data && data.eventId) || '';
    const at = num(data && data.atUnixMs) || Date.now();
    const key = `e:${eventId || `${name}:${at}`}`;
    switch (name) {
      case 'queued':
        if (s.phase !== 'ended' && s.phase !== 'offline') s.phase = 'waiting';
        s.offered = false;
        s.queue = { position: num(payload.position), wait: num(payload.estimatedWaitSeconds) };
        break;
      case 'offered':
        s.offered = true;
        break;
      case 'assigned':
        s.phase = s.phase === 'ended' ? 'ended' : 'chat';
        s.agentId = payload.agentId || '';
        s.agentName = payload.agentDisplayName || payload.agentId || this.tr('widget.agent');
        s.queue = null;
        s.busy = null;
        s.offered = false;
        this.notice(key, this.tr('widget.assigned', { name: s.agentName }), 'good');
        break;
      case 'message':
        this.onMessage(payload);
        break;
      case 'typing':
        if (payload.agentDisplayName) s.agentName = s.agentName || payload.agentDisplayName;
        this.showTyping(Boolean(payload.typing), payload.agentDisplayName || s.agentName);
        break;
      case 'requeued':
        if (s.phase !== 'ended') s.phase = 'waiting';
        s.agentId = '';
        s.agentName = '';
        s.offered = false;
        this.showTyping(false);
        this.notice(key, this.tr('widget.requeued'));
        break;
      case 'transferred':
        this.notice(key, this.tr('widget.transferred'));
        break;
      case 'handedOver':
        this.notice(key, this.tr('widget.handedOver'));
        break;
      case 'offline':
        s.offlineInfo = { message: payload.message || '', reopensAt: num(payload.reopensAtUnixMs) };
        if (s.phase !== 'ended') s.phase = 'offline';
        break;
      case 'busy':
        s.busy = {
          message: payload.message || '',
          wait: num(payload.estimatedWaitSeconds),
          options: Array.isArray(payload.options) ? payload.options : [],
        };
        break;
      case 'closed':
        this.notice(key, this.tr('widget.closed'), 'info');
        this.markEnded();
        break;
      case 'ratingRequested':
        s.ratingRequested = true;
        if (s.phase !== 'ended') this.markEnded();
        break;
      default:
        break;
    }
    if (eventId) s.lastEventId = String(eventId);
    this.save();
    this.update();
  }

  onMessage(message) {
    const s = this.state;
    const sender = SENDER[message.sender] || 'system';
    const seq = num(message.seq);
    const messageId = message.messageId || '';
    let entry =
      (seq && s.entries.find((e) => e.type === 'msg' && e.seq === seq)) ||
      (messageId && sender === 'customer' && s.entries.find((e) => e.type === 'msg' && e.messageId === messageId));
    if (entry) {
      entry.seq = seq || entry.seq;
      if (sender === 'customer') entry.state = 'delivered';
      this.renderEntry(entry);
      return;
    }
    entry = {
      key: sender === 'customer' && messageId ? `id:${messageId}` : `seq:${seq || newId()}`,
      type: 'msg',
      sender,
      messageId,
      seq,
      author: message.author || '',
      authorName: sender === 'agent' && message.author === s.agentId ? s.agentName : '',
      text: message.text || '',
      at: num(message.atUnixMs) || Date.now(),
      statusNote: Boolean(message.statusNote),
      state: sender === 'customer' ? 'delivered' : '',
    };
    s.entries.push(entry);
    this.renderEntry(entry);
    if (sender === 'agent') this.showTyping(false);
    if (sender !== 'customer' && (!s.open || document.hidden)) s.unread += 1;
  }

  showTyping(on, name) {
    clearTimeout(this.agentTypingTimer);
    this.typing.hidden = !on;
    this.typing.textContent = on ? this.tr('widget.typing', { name: name || this.tr('widget.agent') }) : '';
    if (on) this.agentTypingTimer = setTimeout(() => this.showTyping(false), TYPING_SHOW_MS);
  }
}
