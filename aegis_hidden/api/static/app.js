// The aegis-hidden dashboard: plain JavaScript, no build step, no third-party code.
//
// The token is typed in once and kept in this tab's sessionStorage; REST calls
// send it as "Authorization: Bearer", the WebSocket (which cannot set headers in
// a browser) as the access_token query parameter, exactly like the seed's
// example client. Every value from the node is written with textContent.
'use strict';

(function () {
  const TOKEN_KEY = 'aegis-hidden.token';
  const AUDIT_KEY = 'aegis-hidden.audit'; // the id of the audit started from this tab
  const MAX_EVENTS = 200;
  const STATUS_FAST = 1000; // ms, while a transport is still bootstrapping
  const STATUS_SLOW = 5000;
  const PEERS_EVERY = 5000;
  const FEATURES_EVERY = 15000;

  let token = null;
  let socket = null;
  let lastSeq = 0;
  let eventCount = 0;
  let reconnectDelay = 1000;
  let timers = [];
  let statusTimer = null;
  let refreshPending = null;
  let sessions = new Map(); // peer -> transport of its live session
  const seenProgress = {}; // transport -> progress values shown on its bar, in order
  // tor -> the progress of the node's tor_bootstrap events from before this page
  // connected (replayed by the event stream): the way there, never shown on the bar
  const pastProgress = {};
  let replayedUpTo = 0; // events with seq <= this are history (hello's seq)
  let featurePaths = null;
  let lastTransports = {};
  let lastStatus = null;
  let auditTimer = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function fmtTime(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    return new Date(seconds * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
  }

  function fmtIn(seconds) {
    const delta = seconds - Date.now() / 1000;
    const abs = Math.abs(delta);
    let text;
    if (abs >= 86400) text = (abs / 86400).toFixed(1) + ' days';
    else if (abs >= 3600) text = (abs / 3600).toFixed(1) + ' hours';
    else text = Math.round(abs / 60) + ' minutes';
    return delta >= 0 ? 'in ' + text : text + ' ago (expired)';
  }

  function fmtRate(value) {
    return String(Number(Number(value || 0).toPrecision(3)));
  }

  function fmtBytes(perSecond) {
    if (perSecond >= 1048576) return (perSecond / 1048576).toFixed(2) + ' MiB/s';
    if (perSecond >= 1024) return (perSecond / 1024).toFixed(1) + ' KiB/s';
    return perSecond.toFixed(0) + ' B/s';
  }

  function fillList(dl, rows) {
    clear(dl);
    for (const [name, value, cls] of rows) {
      dl.appendChild(el('dt', name));
      dl.appendChild(el('dd', value, cls));
    }
  }

  // -- the API -----------------------------------------------------------------
  class Unauthorized extends Error {}
  class NotFound extends Error {}

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // GET ``path`` (POST ``body`` as JSON when given); the reply's JSON
  async function api(path, body) {
    const headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
    const init = { headers: headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      init.method = 'POST';
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) throw new Unauthorized('the node refused the token');
    if (response.status === 404) throw new NotFound(path);
    let reply = null;
    try {
      reply = await response.json();
    } catch (error) {
      reply = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, (reply && reply.error) || 'HTTP ' + response.status);
    }
    return reply;
  }

  function apiFailed(error) {
    if (error instanceof Unauthorized) {
      logout('The node refused the token (rotated?). Sign in again.');
      return;
    }
    $('api-error').textContent = 'API: ' + error.message;
  }

  // -- sign in / out -------------------------------------------------------------
  async function login(event) {
    event.preventDefault();
    const input = $('token');
    const typed = input.value.trim();
    input.value = '';
    if (!typed) return;
    token = typed;
    try {
      await api('/api/network/status');
    } catch (error) {
      token = null;
      $('login-error').textContent = error instanceof Unauthorized
        ? 'That token was refused.' : 'Could not reach the API: ' + error.message;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, typed);
    start();
  }

  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    for (const t of timers) clearInterval(t);
    timers = [];
    if (statusTimer !== null) clearTimeout(statusTimer);
    statusTimer = null;
    if (auditTimer !== null) clearTimeout(auditTimer);
    auditTimer = null;
    sessionStorage.removeItem(AUDIT_KEY);
    if (socket !== null) {
      const s = socket;
      socket = null;
      s.close();
    }
    setLive(false);
    // nothing of the node stays in the page once the token is forgotten
    for (const id of ['events', 'identity', 'counts', 'mixing', 'transports']) clear($(id));
    for (const id of ['peers', 'sessions']) clear($(id).tBodies[0]);
    for (const box of document.querySelectorAll('.feature')) clear(box);
    $('node-onion').textContent = '';
    $('event-count').textContent = '';
    $('api-error').textContent = '';
    eventCount = 0;
    lastSeq = 0;
    replayedUpTo = 0;
    lastStatus = null;
    lastTransports = {};
    featurePaths = null;
    for (const name of Object.keys(seenProgress)) delete seenProgress[name];
    for (const name of Object.keys(pastProgress)) delete pastProgress[name];
    $('dashboard').hidden = true;
    $('logout').hidden = true;
    $('login-panel').hidden = false;
    $('login-error').textContent = typeof message === 'string' ? message : '';
  }

  function start() {
    $('login-panel').hidden = true;
    $('login-error').textContent = '';
    $('dashboard').hidden = false;
    $('logout').hidden = false;
    refreshPeers();
    timers.push(setInterval(refreshPeers, PEERS_EVERY));
    // the status first: it says which of the optional panels can answer at all
    pollStatus().then(() => {
      if (token === null) return;
      refreshFeatures();
      timers.push(setInterval(refreshFeatures, FEATURES_EVERY));
    });
    connectEvents();
  }

  // -- status: identity, transports, counts, sessions, mixing ---------------------
  async function pollStatus() {
    statusTimer = null;
    let delay = STATUS_SLOW;
    try {
      const status = await api('/api/network/status');
      if (token === null) return;
      $('api-error').textContent = '';
      delay = renderStatus(status) ? STATUS_SLOW : STATUS_FAST;
    } catch (error) {
      apiFailed(error);
      if (token === null) return;
    }
    statusTimer = setTimeout(pollStatus, delay);
  }

  // Returns true when every transport is ready (the status may then be polled slowly).
  function renderStatus(status) {
    lastStatus = status;
    const identity = status.identity || {};
    $('node-onion').textContent = identity.onion || '';
    const rows = [['onion', identity.onion || '—', 'mono']];
    if (identity.kind) rows.push(['record', identity.kind + ', sequence ' + identity.sequence]);
    if (identity.created) rows.push(['signed', fmtTime(identity.created)]);
    if (identity.expires) {
      rows.push(['expires', fmtTime(identity.expires) + ' (' + fmtIn(identity.expires) + ')']);
    }
    if (identity.i2p_destination) rows.push(['I2P', identity.i2p_destination, 'mono']);
    if ('post_quantum_signature' in identity) {
      rows.push(['ML-DSA-65', identity.post_quantum_signature ? 'signed' : 'absent']);
    }
    fillList($('identity'), rows);

    lastTransports = status.transports || {};
    const allReady = renderTransports(lastTransports);

    const counts = status.counts || {};
    const countRows = [
      ['peers', counts.peers], ['connected', counts.connected],
      ['blacklisted', counts.blacklisted], ['outbox', counts.outbox],
      ['session layer', status.session_layer ? 'attached' : 'none'],
    ];
    const emergency = status.emergency;
    if (emergency) { // the emergency controls (isolate, throttle)
      countRows.push(['isolated', emergency.isolated
        ? 'yes, since ' + fmtTime(emergency.isolated_since) +
          (emergency.isolation_reason ? ' (' + emergency.isolation_reason + ')' : '')
        : 'no', emergency.isolated ? 'alert' : '']);
      const cap = emergency.throttle && emergency.throttle.bytes_per_second;
      countRows.push(['bandwidth cap', cap ? fmtBytes(cap) : 'none']);
    }
    fillList($('counts'), countRows);

    sessions = new Map((status.sessions || []).map((s) => [s.peer, s.transport]));
    const body = $('sessions').tBodies[0];
    clear(body);
    for (const [peer, transport] of sessions) {
      const row = el('tr');
      row.appendChild(el('td', peer, 'peer'));
      row.appendChild(el('td', transport));
      body.appendChild(row);
    }
    if (sessions.size === 0) {
      const row = el('tr');
      const cell = el('td', 'no live session', 'muted');
      cell.colSpan = 2;
      row.appendChild(cell);
      body.appendChild(row);
    }
    $('session-count').textContent = '(' + sessions.size + ')';

    renderMixing(status.mixing, sessions.size);
    return allReady;
  }

  function transportProgress(name, state) {
    if (state.error && !state.ready && !state.bootstrap && !state.state) {
      return { value: 0, max: 100, label: 'error: ' + state.error };
    }
    if (state.bootstrap) {
      const b = state.bootstrap;
      let label = b.progress + '% ' + (b.tag || '') + (b.summary ? ': ' + b.summary : '');
      if (typeof b.steps === 'number') label += ' (step ' + b.step + ' of ' + b.steps + ')';
      if (b.warning) label += ' (warning: ' + b.warning + ')';
      return { value: b.progress, max: 100, label: label };
    }
    const phase = state.phase || state.state || (state.ready ? 'ready' : 'starting');
    return { value: state.ready ? 1 : 0, max: 1, label: phase };
  }

  function renderTransports(transports) {
    const box = $('transports');
    let allReady = true;
    const names = Object.keys(transports).sort((a, b) =>
      (a === 'tor' ? -1 : b === 'tor' ? 1 : a.localeCompare(b)));
    for (const name of names) {
      const state = transports[name] || {};
      const p = transportProgress(name, state);
      if (!state.ready) allReady = false;
      const percent = Math.round((100 * p.value) / p.max);
      const seen = seenProgress[name] || (seenProgress[name] = []);
      if (seen[seen.length - 1] !== percent) seen.push(percent);

      let block = $('transport-' + name);
      if (block === null) {
        block = el('div', null, 'transport');
        block.id = 'transport-' + name;
        const head = el('div', null, 'transport-head');
        head.appendChild(el('strong', name));
        head.appendChild(el('span', '', 'ready-text'));
        block.appendChild(head);
        const bar = el('progress');
        bar.id = 'progress-' + name;
        block.appendChild(bar);
        block.appendChild(el('div', '', 'label'));
        block.appendChild(el('div', '', 'seen'));
        box.appendChild(block);
      }
      const bar = block.querySelector('progress');
      bar.max = p.max;
      bar.value = p.value;
      bar.dataset.percent = String(percent);
      bar.setAttribute('aria-valuenow', String(percent));
      bar.setAttribute('aria-label', name + ' bootstrap');
      const readyText = block.querySelector('.ready-text');
      readyText.textContent = state.ready ? 'ready' : 'not ready';
      readyText.className = 'ready-text ' + (state.ready ? 'ready' : 'muted');
      let label = p.label;
      if (name === 'tor' && state.published) label += ' — onion published';
      if (state.error) label += ' — ' + state.error;
      block.querySelector('.label').textContent = label;
      showSeen(name);
    }
    if (names.length === 0) {
      clear(box);
      box.appendChild(el('p', 'no transport enabled', 'muted'));
    }
    return allReady;
  }

  // "seen: 0% → 45% → 100%": the node's bootstrap events from before the page was
  // opened, then what the bar itself showed
  function showSeen(name) {
    const block = $('transport-' + name);
    if (block === null) return;
    const values = [];
    for (const v of (pastProgress[name] || []).concat(seenProgress[name] || [])) {
      if (values[values.length - 1] !== v) values.push(v);
    }
    const seenText = block.querySelector('.seen');
    seenText.textContent = 'seen: ' + values.map((v) => v + '%').join(' → ');
    seenText.dataset.values = values.join(',');
    seenText.dataset.bar = (seenProgress[name] || []).join(',');
  }

  function renderMixing(mixing, liveSessions) {
    const dl = $('mixing');
    if (!mixing) {
      fillList(dl, [['profile', 'not reported by this node']]);
      return;
    }
    const perLink = mixing.bytes_per_second_per_link || 0;
    const rows = [
      ['profile', mixing.profile],
      ['cover traffic', mixing.cover_traffic ? 'on' : 'off'],
      ['slot rate λ', fmtRate(mixing.cover_rate) + ' cells/s per link'],
      ['constant rate', mixing.constant_rate ? 'yes' : 'no'],
      ['burst', mixing.burst === null || mixing.burst === undefined ? '—' : mixing.burst],
      ['per link', fmtBytes(perLink)],
      ['overhead now', fmtBytes(perLink * liveSessions) + ' (' + liveSessions +
        ' live session' + (liveSessions === 1 ? '' : 's') + ')'],
      ['loop cover', mixing.loop_cover ? (fmtRate(mixing.loop_rate) + '/s') : 'not running'],
      ['mix pool', mixing.mix_pool ? (fmtRate(mixing.mix_rate) + '/s') : 'not running'],
    ];
    fillList(dl, rows);
  }

  // -- peers ---------------------------------------------------------------------
  function peerTransport(peer) {
    if (sessions.has(peer.id)) return sessions.get(peer.id) + ' (live)';
    const kinds = [];
    if (peer.onion || String(peer.id).endsWith('.onion')) kinds.push('tor');
    if (peer.i2p_destination || String(peer.id).endsWith('.b32.i2p')) kinds.push('i2p');
    return kinds.join(', ') || '—';
  }

  async function refreshPeers() {
    let page;
    try {
      page = await api('/api/network/peers?limit=500');
    } catch (error) {
      apiFailed(error);
      return;
    }
    const body = $('peers').tBodies[0];
    clear(body);
    for (const peer of page.peers) {
      const row = el('tr');
      row.dataset.peer = peer.id;
      row.appendChild(el('td', peer.id, 'peer'));
      row.appendChild(el('td', peer.status, 'status-' + peer.status));
      const rep = el('td');
      const meter = el('meter');
      meter.min = 0;
      meter.max = 1;
      meter.low = 0.3;
      meter.optimum = 1;
      meter.value = peer.reputation;
      rep.appendChild(meter);
      rep.appendChild(document.createTextNode(' ' + Number(peer.reputation).toFixed(2)));
      row.appendChild(rep);
      row.appendChild(el('td', peerTransport(peer)));
      row.appendChild(el('td', fmtTime(peer.last_seen)));
      body.appendChild(row);
    }
    if (page.peers.length === 0) {
      const row = el('tr');
      const cell = el('td', 'no peers yet', 'muted');
      cell.colSpan = 5;
      row.appendChild(cell);
      body.appendChild(row);
    }
    $('peer-count').textContent = '(' + page.peers.length +
      (page.next_cursor ? '+, first page' : '') + ')';
  }

  // -- topics, DHT, audit: shown when this node's API document has them ------------
  // The endpoints are looked up in /api/openapi.json rather than probed, so a node
  // without them costs no failed request; a 404 or 503 still reads "not available".
  function documented(path, method) {
    const entry = featurePaths && featurePaths[path];
    return Boolean(entry && entry[method]);
  }

  // the first GET path (no parameter) at or below one of the space-separated ``bases``
  function featurePath(documentPaths, bases) {
    for (const base of bases.split(' ')) {
      const candidates = Object.keys(documentPaths).filter((p) =>
        (p === base || p.startsWith(base + '/')) && !p.includes('{') &&
        documentPaths[p] && documentPaths[p].get);
      candidates.sort((a, b) => (a === base ? -1 : b === base ? 1 : a.localeCompare(b)));
      if (candidates.length) return candidates[0];
    }
    return null;
  }

  async function refreshFeatures() {
    if (featurePaths === null) {
      try {
        const doc = await api('/api/openapi.json');
        featurePaths = doc.paths || {};
      } catch (error) {
        apiFailed(error);
        return;
      }
    }
    for (const panelId of ['topics-panel', 'dht-panel']) {
      const panel = $(panelId);
      const box = panel.querySelector('.feature');
      const path = featurePath(featurePaths, panel.dataset.path);
      if (path === null) {
        unavailable(panel, box);
        continue;
      }
      if (panelId === 'dht-panel' && lastStatus && lastStatus.dht &&
          lastStatus.dht.running === false) {
        unavailable(panel, box, 'the DHT is not running (dht.enabled is false)');
        continue;
      }
      try {
        const data = await api(path);
        panel.dataset.available = 'yes';
        clear(box);
        box.appendChild(panelId === 'dht-panel' ? dhtList(data) : genericList(data));
      } catch (error) {
        if (!unavailableOn(error, panel, box)) apiFailed(error);
      }
    }
    await refreshAudit();
  }

  function unavailable(panel, box, why) {
    panel.dataset.available = 'no';
    clear(box);
    box.appendChild(el('p', 'not available on this node' + (why ? ': ' + why : ''),
      'unavailable'));
  }

  // true when ``error`` says the endpoint is absent (404) or not running (503)
  function unavailableOn(error, panel, box) {
    if (error instanceof NotFound) {
      unavailable(panel, box);
      return true;
    }
    if (error instanceof ApiError && error.status === 503) {
      unavailable(panel, box, error.message);
      return true;
    }
    return false;
  }

  function summary(value) {
    if (value === null || value === undefined) return '—';
    if (Array.isArray(value)) {
      if (value.every((v) => typeof v !== 'object' || v === null)) {
        return value.length ? value.join(', ') : 'none';
      }
      return value.length + ' item' + (value.length === 1 ? '' : 's');
    }
    if (typeof value === 'object') {
      const text = JSON.stringify(value);
      return text.length > 240 ? text.slice(0, 240) + '…' : text;
    }
    return String(value);
  }

  function genericList(data) {
    const dl = el('dl');
    fillList(dl, Object.entries(data || {}).map(([key, value]) => [key, summary(value)]));
    return dl;
  }

  function dhtList(data) {
    const table = data.routing_table;
    const records = data.records;
    const lookups = data.lookups;
    if (!table || !records || !lookups) return genericList(data);
    const dl = el('dl');
    const rows = [
      ['contacts', table.contacts],
      ['buckets in use', (table.buckets || []).length],
      ['records held', records.held],
      ['own record', records.own_sequence === null || records.own_sequence === undefined
        ? 'not published' : 'sequence ' + records.own_sequence + ', stored at ' +
          summary(records.own_stored_at) + ' node(s)'],
      ['lookups', lookups.ok + ' ok, ' + lookups.failed + ' failed'],
      ['last lookup', lookups.last_seconds === null || lookups.last_seconds === undefined
        ? '—' : Number(lookups.last_seconds).toFixed(2) + ' s'],
      ['requests answered', summary(data.requests_answered)],
      ['RPC failures', summary(data.rpc_failures)],
    ];
    if (data.refused && Object.keys(data.refused).length) {
      rows.push(['refused', summary(data.refused)]);
    }
    fillList(dl, rows);
    return dl;
  }

  // The audit: the API keeps a node's last audits by id and has no "latest" list,
  // so the panel follows the audit started from this tab (its id in sessionStorage).
  async function refreshAudit() {
    const panel = $('audit-panel');
    const box = panel.querySelector('.feature');
    if (!documented('/api/network/audit', 'post')) {
      unavailable(panel, box);
      return;
    }
    if (lastStatus && !lastStatus.mixing) {
      unavailable(panel, box, 'the node has no mixing layer, so no cell trace to audit');
      return;
    }
    panel.dataset.available = 'yes';
    const id = sessionStorage.getItem(AUDIT_KEY);
    let audit = null;
    if (id) {
      try {
        audit = await api('/api/network/audit/' + encodeURIComponent(id));
      } catch (error) {
        if (error instanceof NotFound) {
          sessionStorage.removeItem(AUDIT_KEY);
        } else if (!unavailableOn(error, panel, box)) {
          apiFailed(error);
        }
        if (!(error instanceof NotFound)) return;
      }
    }
    renderAudit(box, audit);
    if (audit && (audit.state === 'recording' || audit.state === 'analysing')) {
      if (auditTimer === null) {
        auditTimer = setTimeout(() => {
          auditTimer = null;
          if (token !== null) refreshAudit();
        }, 2000);
      }
    }
  }

  function renderAudit(box, audit) {
    const previous = $('audit-seconds');
    const typed = previous === null ? '60' : previous.value;
    clear(box);
    const form = el('form');
    form.id = 'audit-form';
    const label = el('label', 'Record ');
    const seconds = el('input');
    seconds.type = 'number';
    seconds.min = 1;
    seconds.max = 600;
    seconds.value = typed;
    seconds.id = 'audit-seconds';
    label.appendChild(seconds);
    label.appendChild(document.createTextNode(' s of cells, then audit them '));
    form.appendChild(label);
    const run = el('button', 'Run an audit');
    run.type = 'submit';
    const busy = audit && (audit.state === 'recording' || audit.state === 'analysing');
    run.disabled = Boolean(busy);
    form.appendChild(run);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      startAudit(Number(seconds.value)).catch(apiFailed);
    });
    box.appendChild(form);
    if (audit === null) {
      box.appendChild(el('p', 'no audit started from this tab yet', 'muted'));
      return;
    }
    const rows = [['audit', audit.id, 'mono'], ['state', audit.state],
      ['cells', audit.cells + (audit.truncated ? ' (truncated)' : '') + ' in ' +
        audit.seconds + ' s']];
    if (audit.state === 'failed') rows.push(['error', audit.error]);
    const report = audit.report;
    if (report) {
      rows.push(['result', report.passed ? 'passed' : 'FAILED: ' +
        (report.failed || []).join(', ')]);
      for (const check of report.checks || []) {
        rows.push([check.name, check.status + (check.summary ? ' — ' + check.summary : '')]);
      }
    }
    const dl = el('dl');
    fillList(dl, rows);
    box.appendChild(dl);
    if (typeof audit.report_html === 'string' && audit.report_html.startsWith('/api/')) {
      const link = el('button', 'Download the HTML report');
      link.type = 'button';
      link.id = 'audit-report';
      link.addEventListener('click', () => {
        downloadReport(audit.report_html, 'audit-' + audit.id + '.html');
      });
      box.appendChild(link);
    }
  }

  async function startAudit(seconds) {
    const box = $('audit-panel').querySelector('.feature');
    try {
      const audit = await api('/api/network/audit', { seconds: seconds });
      sessionStorage.setItem(AUDIT_KEY, audit.id);
    } catch (error) {
      if (error instanceof ApiError && error.status !== 500) {
        box.appendChild(el('p', error.message, 'error'));
        return;
      }
      throw error;
    }
    await refreshAudit();
  }

  // The report is a document of its own (inline styles and images under its own
  // policy): it is saved as a file, not opened under this page's policy.
  async function downloadReport(path, name) {
    try {
      const response = await fetch(path, {
        headers: { Authorization: 'Bearer ' + token }, cache: 'no-store', credentials: 'omit',
      });
      if (response.status === 401) throw new Unauthorized('the node refused the token');
      if (!response.ok) throw new Error('report: HTTP ' + response.status);
      const url = URL.createObjectURL(await response.blob());
      const link = el('a');
      link.href = url;
      link.download = name;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      apiFailed(error);
    }
  }

  // -- the live event stream -------------------------------------------------------
  function setLive(on) {
    const badge = $('live');
    badge.textContent = on ? 'events: live' : 'events: off';
    badge.className = 'badge ' + (on ? 'on' : 'off');
  }

  function connectEvents() {
    if (token === null) return;
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    // since=: the kept events first (all of them on the first connection), then live
    const url = scheme + location.host + '/network?access_token=' +
      encodeURIComponent(token) + '&since=' + lastSeq;
    const ws = new WebSocket(url);
    socket = ws;
    ws.onopen = () => {
      if (socket !== ws) return;
      reconnectDelay = 1000;
      setLive(true);
    };
    ws.onmessage = (message) => {
      if (socket !== ws) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      showEvent(event);
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      setLive(false);
      if (token === null) return;
      setTimeout(connectEvents, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 30000);
    };
  }

  function showEvent(event) {
    if (typeof event.seq === 'number') lastSeq = Math.max(lastSeq, event.seq);
    const item = el('li');
    item.dataset.type = String(event.type);
    item.appendChild(el('span', event.type, 'type'));
    const rest = [];
    for (const [key, value] of Object.entries(event)) {
      if (key === 'type' || key === 'seq' || key === 'peer_id') continue;
      if (key === 'message') {
        rest.push('message=' + JSON.stringify(value).length + ' bytes');
        continue;
      }
      if (key === 'time' && typeof value === 'number') {
        rest.push('at ' + fmtTime(value).slice(11));
        continue;
      }
      rest.push(key + '=' + (typeof value === 'object' ? JSON.stringify(value) : value));
    }
    let text = ' ' + rest.join(' ');
    if (text.length > 400) text = text.slice(0, 400) + '…';
    item.appendChild(document.createTextNode(text));
    if (typeof event.seq === 'number') item.value = event.seq;
    const list = $('events');
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
    eventCount += 1;
    $('event-count').textContent = '(' + eventCount + ' received)';
    if (event.type === 'hello' && typeof event.seq === 'number') replayedUpTo = event.seq;
    const replayed = typeof event.seq === 'number' && event.seq <= replayedUpTo &&
      event.type !== 'hello';
    if (event.type === 'tor_bootstrap' && typeof event.progress === 'number' && replayed) {
      const past = pastProgress.tor || (pastProgress.tor = []);
      if (past[past.length - 1] !== event.progress) past.push(event.progress);
      showSeen('tor');
    } else if (event.type === 'tor_bootstrap' && typeof event.progress === 'number' &&
        lastTransports.tor) {
      // between two polls of the status: the bar follows tor's own bootstrap events
      lastTransports.tor.bootstrap = {
        progress: event.progress, tag: event.tag, summary: event.summary, warning: event.warning,
      };
      renderTransports(lastTransports);
    }
    if (/^(peer_|delivery_state|message_received|tor_|i2p_)/.test(String(event.type))) {
      scheduleRefresh();
    }
  }

  function scheduleRefresh() {
    if (refreshPending !== null) return;
    refreshPending = setTimeout(() => {
      refreshPending = null;
      if (token === null) return;
      refreshPeers();
      if (statusTimer !== null) {
        clearTimeout(statusTimer);
        pollStatus();
      }
    }, 300);
  }

  // -- start-up ------------------------------------------------------------------
  document.addEventListener('DOMContentLoaded', () => {
    $('login').addEventListener('submit', (event) => {
      login(event).catch(apiFailed);
    });
    $('logout').addEventListener('click', () => logout(''));
    token = sessionStorage.getItem(TOKEN_KEY);
    if (token) start();
  });
})();
