/*
 * centralino chat widget — embed with one tag:
 *
 *   <script src="https://node.example/widget.js" data-department="sales" data-language="it"
 *           data-color="#0b6e4f" data-logo="/logo.svg" data-position="right"
 *           data-identity-token="v1.c42.1767225600.<hmac>" data-customer-id="c42"
 *           data-title="Assistenza"></script>
 *
 * Data attributes (all optional):
 *   data-department      department asked for at start ("support" when absent); the page rules
 *                        may route elsewhere (a checkout page goes to sales)
 *   data-departments     comma-separated departments offered in the pre-chat form
 *                        (default: data-department, support, sales)
 *   data-language        "it" or "en" (default: the page's <html lang>, then navigator.language)
 *   data-color           accent colour (any CSS colour; invalid values are ignored)
 *   data-logo            URL of a logo shown in the launcher and the header
 *   data-position        "right" (default) or "left"
 *   data-title           header title (default: "Assistenza clienti" / "Customer service")
 *   data-identity-token  the shop's signed identity token of a logged-in customer
 *   data-customer-id     the shop's customer id (honoured only with the identity token)
 *   data-api-base        origin of the centralino node (default: the origin of this script)
 *
 * This file is a classic script (so the one-tag embed works); it loads the widget module
 * `js/widget-app.js` relative to its own URL, which renders inside an open shadow DOM on
 * `<div id="centralino-widget" data-testid="centralino-widget">` appended to <body>.
 * No inline script or style is used: a page with CSP `script-src 'self'` works.
 *
 * Stable data-testid attributes inside the shadow root (the element id is the same):
 *   cw-launcher        launcher button (aria-expanded)      cw-unread      unread badge
 *   cw-panel           the chat panel (role=dialog)         cw-title       header title
 *   cw-subtitle        header line: agent name or state     cw-agent-name  agent's name
 *   cw-minimise        minimise button                      cw-end         end-chat button
 *   cw-banner          connection / error banner (role=status)
 *   cw-prechat         pre-chat form: cw-name, cw-email, cw-department, cw-language,
 *                      cw-question, cw-start, cw-prechat-error
 *   cw-welcome         "Bentornato, NAME" / "Welcome back, NAME" (returning customer)
 *   cw-queue           queue box: cw-queue-position, cw-queue-wait
 *   cw-log             the transcript (role=log, aria-live=polite); each message is
 *                      data-testid=cw-msg with data-sender (customer|agent|system), data-seq,
 *                      data-message-id, data-state (sending|retrying|sent|delivered|failed);
 *                      inside: cw-msg-text, cw-msg-state; notices are data-testid=cw-notice
 *   cw-typing          the agent's typing indicator
 *   cw-composer        composer form: cw-input (Enter sends, Shift+Enter new line), cw-send
 *   cw-busy            busy alternatives: cw-busy-text, cw-opt-wait, cw-opt-callback,
 *                      cw-opt-message
 *   cw-callback        callback form: cw-callback-phone, cw-callback-time, cw-callback-send,
 *                      cw-callback-cancel, cw-callback-error; cw-callback-done when sent
 *   cw-offline         offline / leave-a-message form: cw-offline-title, cw-offline-reopens,
 *                      cw-offline-name, cw-offline-email, cw-offline-phone, cw-offline-text,
 *                      cw-offline-send, cw-offline-cancel, cw-offline-error; cw-offline-done
 *   cw-confirm-end     end-chat confirmation: cw-confirm-yes, cw-confirm-no
 *   cw-closed          "the chat has ended" box with cw-new-chat
 *   cw-rating          rating form: cw-rate-good, cw-rate-bad (aria-pressed),
 *                      cw-rating-comment, cw-rating-send, cw-rating-error; cw-rating-done
 *
 * Session storage keys: "centralino.widget.v1" (conversation id, token, last event id,
 * transcript so far, pending messages with their client message ids), "centralino.pages",
 * "centralino.siteStart", "centralino.referrer" (visitor context). Local storage:
 * "centralino.visitorToken" (continues an anonymous visitor's history).
 */
(function () {
  'use strict';
  if (window.__centralinoWidgetLoaded) return;
  window.__centralinoWidgetLoaded = true;

  var script = document.currentScript;
  if (!script) {
    var all = document.querySelectorAll('script[src]');
    for (var i = 0; i < all.length; i += 1) {
      if (/(^|\/)widget\.js(\?|#|$)/.test(all[i].getAttribute('src') || '')) script = all[i];
    }
  }
  if (!script || !script.src) return;

  var scriptUrl = script.src;
  var config = {};
  var keys = Object.keys(script.dataset);
  for (var k = 0; k < keys.length; k += 1) config[keys[k]] = script.dataset[keys[k]];

  var moduleUrl = new URL('js/widget-app.js', scriptUrl).href;
  import(moduleUrl)
    .then(function (mod) {
      mod.mount({ config: config, scriptUrl: scriptUrl });
    })
    .catch(function (err) {
      console.error('centralino: the chat widget could not load', err);
    });
})();
