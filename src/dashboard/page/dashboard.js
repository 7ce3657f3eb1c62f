// The kitchensink dashboard: plain browser JavaScript, no build step. It reads the cluster's
// live feed (GET api/v1/events, Server-Sent Events read with fetch so the token can go in a
// header) and a few JSON routes; charts are uPlot's. Every url is relative: the page works
// behind a proxy that adds a path prefix.
(() => {
  'use strict';
  const $ = (selector) => document.querySelector(selector);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const esc = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const streamWindowMs = 60_000;
  const chartWindowS = 600;
  const maxBarsKept = 6_000;

  // ---- the token (nodes started with --token): asked once, kept in local storage ----
  let token = localStorage.getItem('ks-token') || '';
  const auth = () => (token ? { authorization: 'Bearer ' + token } : {});
  function askToken() {
    const given = prompt('This kitchensink node needs its token (--token):');
    if (!given) return false;
    token = given;
    localStorage.setItem('ks-token', token);
    return true;
  }
  async function api(path, init = {}) {
    for (;;) {
      const sent = token;
      const answer = await fetch(path, { ...init, headers: { ...(init.headers || {}), ...auth() } });
      if (answer.status !== 401) return answer;
      // Refused with a token another request has replaced since: try the new one before asking.
      if (sent === token && !askToken()) return answer;
    }
  }
  function setStatus(state, text) {
    const el = $('#status');
    el.dataset.state = state;
    el.textContent = text;
  }

  // ---- what the feed told so far ----
  const hosts = new Map(); // name -> {info, alive, tick}
  let bars = []; // {host, lane, fn, task, start, end, status}
  const ended = new Map(); // second -> calls ended then
  const depths = []; // [second, calls waiting]
  const failures = [];
  let view = null;
  const colours = new Map();

  function colourOf(fn) {
    if (!colours.has(fn)) {
      let h = 0;
      for (const c of fn) h = (h * 31 + c.charCodeAt(0)) >>> 0;
      colours.set(fn, `hsl(${h % 360} 60% 55%)`);
    }
    return colours.get(fn);
  }

  const on = {
    hello(message) {
      // The charts' history before the ticks that follow; the view of now.
      for (const [second, calls] of message.ended || []) ended.set(second, (ended.get(second) || 0) + calls);
      depths.length = 0;
      depths.push(...(message.waiting || []));
      if (message.view) takeView(message.view);
      dirty();
    },
    tick(tick) {
      const host = hosts.get(tick.host) || { info: null, alive: true };
      host.tick = tick;
      hosts.set(tick.host, host);
      for (const [lane, fn, task, start, end, status] of tick.bars) bars.push({ host: tick.host, lane, fn, task, start, end, status });
      if (bars.length > maxBarsKept) bars = bars.slice(-maxBarsKept);
      const second = Math.floor(tick.at / 1000);
      ended.set(second, (ended.get(second) || 0) + tick.bars.length + (tick.dropped || 0));
      for (const failure of tick.failures) {
        failures.unshift({ ...failure, host: tick.host });
        if (failures.length > 20) failures.pop();
      }
      dirty();
    },
    cluster(cluster) {
      takeView(cluster);
      depths.push([Math.floor(cluster.at / 1000), cluster.queues.reduce((sum, q) => sum + q.depth, 0)]);
      while (depths.length > chartWindowS) depths.shift();
      dirty();
    },
    gap(message) {
      setStatus('live', `live (missed ${message.missed} updates: this browser fell behind)`);
    },
  };

  /** The hosts, queues and batches now; a host that left the registry stays listed, dead. */
  function takeView(cluster) {
    view = cluster;
    const named = new Set();
    for (const info of cluster.hosts) {
      named.add(info.name);
      const host = hosts.get(info.name) || {};
      Object.assign(host, { info, alive: info.alive !== false });
      hosts.set(info.name, host);
    }
    for (const [name, host] of hosts) if (!named.has(name)) host.alive = false;
  }

  function handle(block) {
    let event = 'message';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    if (data && on[event]) on[event](JSON.parse(data));
  }

  async function follow() {
    for (;;) {
      try {
        const answer = await api('api/v1/events', { headers: { accept: 'text/event-stream' } });
        if (answer.status === 401) {
          setStatus('error', 'this node needs its token: reload to give it');
          return;
        }
        if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
        setStatus('live', 'live');
        const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          for (let at = buffer.indexOf('\n\n'); at >= 0; at = buffer.indexOf('\n\n')) {
            handle(buffer.slice(0, at));
            buffer = buffer.slice(at + 2);
          }
        }
        setStatus('error', 'the node closed the feed; reconnecting…');
      } catch (error) {
        setStatus('error', `disconnected (${error.message}); reconnecting…`);
      }
      await sleep(1_000);
    }
  }

  // ---- drawing, at most every 500 ms ----
  let pending = false;
  function dirty() {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      if (!$('#cluster-view').hidden) render();
    }, 500);
  }

  function render() {
    renderHosts();
    renderQueues();
    renderStream();
    renderCharts();
    renderBatches();
    renderFailures();
  }

  function renderHosts() {
    const rows = [...hosts.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, host]) => {
      const lanes = host.tick?.lanes || [];
      const busy = lanes.filter((l) => l.busy).length;
      const state = host.alive ? 'alive' : 'dead';
      return `<tr data-host="${esc(name)}" data-state="${state}"><td>${esc(name)}<br><small>${esc(host.info?.url || '')}</small></td><td class="${state}">${state}</td>` +
        `<td>${lanes.length ? `${busy} busy, ${lanes.length - busy} idle` : esc(host.info?.workers ?? '')}</td>` +
        `<td class="num">${host.tick ? host.tick.rssMb + ' MB' : ''}</td><td>${esc(host.info?.version || host.tick?.version || '')}</td></tr>`;
    });
    $('#hosts tbody').innerHTML = rows.join('');
  }

  function renderQueues() {
    const queues = view?.queues || [];
    $('#queues tbody').innerHTML = queues.length
      ? queues.map((q) => `<tr data-queue="${esc(q.name)}"><td>${esc(q.name)}</td><td class="num">${q.depth}</td><td class="num">${q.oldestWaitMs ? (q.oldestWaitMs / 1000).toFixed(1) + ' s' : '–'}</td></tr>`).join('')
      : '<tr><td colspan="3" class="empty">no live host</td></tr>';
  }

  function renderStream() {
    const svg = $('#stream');
    const now = Date.now();
    const from = now - streamWindowMs;
    bars = bars.filter((b) => b.end >= from);
    const lanes = [];
    for (const [name, host] of [...hosts.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      if (!host.alive) continue;
      for (const lane of host.tick?.lanes || []) lanes.push({ key: `${name}/${lane.lane}`, host: name, state: lane });
    }
    for (const b of bars) if (!lanes.some((l) => l.key === `${b.host}/${b.lane}`)) lanes.push({ key: `${b.host}/${b.lane}`, host: b.host });
    const width = Math.max(600, svg.parentElement.clientWidth - 4);
    const labelW = 150;
    const laneH = 18;
    svg.setAttribute('width', width);
    svg.setAttribute('height', lanes.length * laneH + 20);
    const x = (t) => labelW + ((t - from) / streamWindowMs) * (width - labelW - 4);
    const row = new Map(lanes.map((l, k) => [l.key, k]));
    const parts = [];
    lanes.forEach((l, k) => parts.push(`<text x="4" y="${k * laneH + 13}">${esc(l.key)}</text><line x1="${labelW}" x2="${width}" y1="${(k + 1) * laneH}" y2="${(k + 1) * laneH}" stroke="#eee"/>`));
    for (const b of bars.slice(-3_000)) {
      const k = row.get(`${b.host}/${b.lane}`);
      const x0 = x(Math.max(b.start, from));
      const w = Math.max(1.5, x(b.end) - x0);
      const [batch, index] = b.task ? b.task.split('-') : ['', ''];
      const tip = `${b.fn}\n${batch ? `batch ${batch} call ${index}\n` : 'direct call\n'}${b.end - b.start} ms, ${b.status}\non ${b.host} (interpreter ${b.lane})`;
      parts.push(`<rect x="${x0.toFixed(1)}" y="${k * laneH + 3}" width="${w.toFixed(1)}" height="${laneH - 6}" fill="${colourOf(b.fn)}" class="bar${b.status === 'ok' ? '' : ' failed'}" data-fn="${esc(b.fn)}" data-status="${esc(b.status)}"><title>${esc(tip)}</title></rect>`);
    }
    // What runs now: from its start to now, paler.
    for (const l of lanes) {
      if (!l.state?.busy) continue;
      const x0 = x(Math.max(l.state.since, from));
      parts.push(`<rect x="${x0.toFixed(1)}" y="${row.get(l.key) * laneH + 3}" width="${Math.max(1.5, x(now) - x0).toFixed(1)}" height="${laneH - 6}" fill="${colourOf(l.state.fn)}" opacity="0.45" class="running" data-fn="${esc(l.state.fn)}"><title>${esc(`${l.state.fn}\nrunning for ${now - l.state.since} ms\non ${l.host}`)}</title></rect>`);
    }
    parts.push(`<text x="${labelW}" y="${lanes.length * laneH + 15}">-60 s</text><text x="${width - 40}" y="${lanes.length * laneH + 15}">now</text>`);
    svg.innerHTML = parts.join('');
    const fns = [...new Set(bars.map((b) => b.fn))].slice(0, 20);
    $('#legend').innerHTML = fns.map((fn) => `<span style="--c:${colourOf(fn)}">${esc(fn)}</span>`).join('');
  }

  const charts = {};
  /** Both charts show the same span: the last minute at least, ten at most. */
  const span = { from: 0, to: 1 };
  function chart(id, label, stroke) {
    if (charts[id]) return charts[id];
    const el = $(id);
    charts[id] = new uPlot({
      width: Math.max(300, el.clientWidth),
      height: 180,
      scales: { x: { time: true, range: () => [span.from, span.to] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{}, { label, stroke, fill: stroke + '22', width: 1.5, points: { show: false } }],
      axes: [{}, { size: 50 }],
      legend: { show: false },
    }, [[], []], el);
    return charts[id];
  }

  function renderCharts() {
    const now = Math.floor(Date.now() / 1000);
    const xs = [];
    const ys = [];
    const first = Math.min(...ended.keys(), now - 60);
    for (let s = now - chartWindowS; s < now; s++) {
      if (s < first) continue;
      xs.push(s);
      ys.push(ended.get(s) || 0);
    }
    for (const s of ended.keys()) if (s < now - chartWindowS) ended.delete(s);
    span.from = Math.max(now - chartWindowS, Math.min(first, depths.length ? depths[0][0] : now, now - 60));
    span.to = now;
    chart('#throughput-chart', 'calls/s', '#2b6cb0').setData([xs, ys]);
    chart('#depth-chart', 'waiting', '#b7791f').setData([depths.map((d) => d[0]), depths.map((d) => d[1])]);
  }

  function renderBatches() {
    const batches = (view?.batches || []).slice().sort((a, b) => b.seenAt - a.seenAt);
    $('#batches').innerHTML = batches.length
      ? batches.map((b) => {
          const done = b.n > 0 && b.ended >= b.n;
          return `<div class="batch" data-batch="${esc(b.id)}" data-ended="${b.ended}" data-n="${b.n}"><a href="dashboard#batch=${esc(b.id)}">${esc(b.id)}</a> ${done ? 'done' : 'running'}
            <progress max="${b.n || 1}" value="${b.ended}"></progress>
            <div class="counts">${b.ended} of ${b.n || '?'} ended: ${b.ended - b.failed} ok, ${b.failed} failed${b.n ? `, ${b.n - b.ended} to go` : ''}</div></div>`;
        }).join('')
      : '<p class="empty">no batch seen yet</p>';
  }

  function renderFailures() {
    $('#failures').innerHTML = failures.length
      ? failures.map((f) => {
          const batch = f.taskId ? f.taskId.split('-')[0] : '';
          return `<div class="failure" data-task="${esc(f.taskId)}"><b>${esc(f.pythonType || f.kind)}</b>: ${esc(f.message)}<br>
            <small>${esc(f.fn)} on ${esc(f.host)} · ${new Date(f.at).toLocaleTimeString()}${batch ? ` · <a href="dashboard#batch=${esc(batch)}">${esc(f.taskId)}</a>` : ''}</small>
            ${f.traceback ? `<pre class="traceback">${esc(f.traceback)}</pre>` : ''}</div>`;
        }).join('')
      : '<p class="empty">none</p>';
  }

  async function loadJobs() {
    try {
      const answer = await api('api/v1/jobs');
      if (!answer.ok) return;
      const { jobs } = await answer.json();
      $('#jobs').innerHTML = jobs.length
        ? `<table><thead><tr><th>job</th><th>hosts</th><th></th></tr></thead><tbody>${jobs.map((j) => `<tr data-job="${esc(j.name)}"><td>${esc(j.name)}</td><td>${esc((j.hosts || []).join(', '))}</td><td><a href="docs">try it in /docs</a></td></tr>`).join('')}</tbody></table>`
        : '<p class="empty">no job loaded (ks start --entrypoint NAME=file.py)</p>';
    } catch {
      // shown again on the next load
    }
  }

  // ---- the data catalogue ----
  const sizeText = (n) => (n >= 1e9 ? (n / 1e9).toFixed(2) + ' GB' : n >= 1e6 ? (n / 1e6).toFixed(1) + ' MB' : n >= 1e3 ? (n / 1e3).toFixed(1) + ' kB' : n + ' B');
  async function searchData(glob) {
    const found = await api('api/v1/data?glob=' + encodeURIComponent(glob));
    if (!found.ok) {
      $('#data-count').textContent = (await found.json()).detail;
      return;
    }
    const urls = (await found.json()).urls;
    const shown = urls.slice(0, 500);
    const info = shown.length ? await (await api('api/v1/data/info', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls: shown }) })).json() : { data: {} };
    $('#data-count').textContent = `${urls.length} url${urls.length === 1 ? '' : 's'}${urls.length > shown.length ? ', the first 500 shown' : ''}`;
    $('#data tbody').innerHTML = shown.map((url) => {
      const d = info.data[url] || {};
      return `<tr data-url="${esc(url)}"><td>${esc(url)}</td><td class="num">${d.size === undefined ? '' : sizeText(d.size)}</td><td>${esc(d.fmt || '')}</td><td>${esc((d.holders || []).join(', '))}</td><td>${esc(Object.entries(d.tiers || {}).map(([h, t]) => `${t} on ${h}`).join(', ') || 'disk')}</td></tr>`;
    }).join('');
  }
  $('#data-search').addEventListener('submit', (event) => {
    event.preventDefault();
    void searchData($('#glob').value || '*');
  });

  // ---- a batch's page: its calls, their output, and the waterfall of their profiles ----
  let batchShown = null;
  async function showBatch(batchId) {
    batchShown = batchId;
    $('#batch-id').textContent = batchId;
    const calls = new Map();
    let cursor = '0-0';
    while (batchShown === batchId) {
      const answer = await api('api/v1/results', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ batchId, cursor, waitMs: 0, profile: true }) });
      if (!answer.ok) {
        $('#batch-summary').textContent = (await answer.json()).detail;
        return;
      }
      const page = await answer.json();
      cursor = page.cursor;
      for (const e of page.events) {
        const call = calls.get(e.i) || { i: e.i, output: '' };
        calls.set(e.i, call);
        if (e.t === 'started') Object.assign(call, { startedAt: e.at, host: e.h });
        else if (e.t === 'stdout' || e.t === 'stderr') call.output += e.text || '';
        else Object.assign(call, { outcome: e.t, endedAt: e.at, host: e.h || call.host, value: e.value, failure: e.failure, profile: e.profile });
      }
      drawBatch(calls);
      if (!page.events.length) await sleep(1_000);
    }
  }

  function drawBatch(calls) {
    const rows = [...calls.values()].sort((a, b) => a.i - b.i);
    const ended = rows.filter((c) => c.outcome);
    const failed = ended.filter((c) => c.outcome !== 'result');
    $('#batch-summary').textContent = `${rows.length} calls seen, ${ended.length} ended, ${failed.length} failed`;
    $('#calls tbody').innerHTML = rows.map((c) => {
      const p = c.profile || {};
      const text = c.failure ? `${c.failure.pythonType || c.failure.kind}: ${c.failure.message}\n${c.failure.traceback || ''}` : c.output;
      return `<tr data-index="${c.i}" data-outcome="${esc(c.outcome || 'running')}"><td>${c.i}</td><td class="${c.outcome === 'result' ? 'alive' : c.outcome ? 'dead' : ''}">${esc(c.outcome || 'running')}</td><td>${esc(c.host || '')}</td>` +
        `<td class="num">${p.queueWaitMs ?? ''}</td><td class="num">${p.dataMs ?? ''}</td><td class="num">${p.runMs ?? ''}</td><td>${text ? `<pre>${esc(text)}</pre>` : ''}</td></tr>`;
    }).join('');
    // The waterfall: each call's spans, ending where Redis recorded its end.
    const spans = ended.filter((c) => c.profile && c.endedAt).map((c) => {
      const { queueWaitMs: w, dataMs: d, runMs: r } = c.profile;
      return { i: c.i, end: c.endedAt, runFrom: c.endedAt - r, dataFrom: c.endedAt - r - d, waitFrom: c.endedAt - r - d - w };
    });
    const svg = $('#waterfall');
    if (!spans.length) {
      svg.setAttribute('height', 0);
      return;
    }
    const shown = spans.slice(0, 400);
    const t0 = Math.min(...shown.map((s) => s.waitFrom));
    const t1 = Math.max(...shown.map((s) => s.end));
    const width = Math.max(600, svg.parentElement.clientWidth - 4);
    const rowH = 8;
    const x = (t) => 40 + ((t - t0) / Math.max(1, t1 - t0)) * (width - 50);
    svg.setAttribute('width', width);
    svg.setAttribute('height', shown.length * rowH + 20);
    svg.innerHTML = shown.map((s, k) => {
      const y = k * rowH;
      const seg = (a, b, fill, what) => `<rect x="${x(a).toFixed(1)}" y="${y}" width="${Math.max(1, x(b) - x(a)).toFixed(1)}" height="${rowH - 2}" fill="${fill}" class="${what}"><title>call ${s.i}: ${what} ${b - a} ms</title></rect>`;
      return (s.i % 10 === 0 ? `<text x="0" y="${y + 7}">${s.i}</text>` : '') + seg(s.waitFrom, s.dataFrom, '#cbd5e0', 'wait') + seg(s.dataFrom, s.runFrom, '#f6ad55', 'data') + seg(s.runFrom, s.end, '#4299e1', 'run');
    }).join('') + `<text x="40" y="${shown.length * rowH + 15}">0</text><text x="${width - 60}" y="${shown.length * rowH + 15}">${t1 - t0} ms</text>`;
  }

  // ---- which view: #batch=ID, #data, else the cluster ----
  function route() {
    const hash = location.hash.slice(1);
    const batch = /^batch=(b[0-9a-f]{16})$/.exec(hash);
    $('#cluster-view').hidden = !!batch || hash === 'data';
    $('#data-view').hidden = hash !== 'data';
    $('#batch-view').hidden = !batch;
    batchShown = null;
    if (batch) void showBatch(batch[1]);
    else if (hash === 'data') void searchData($('#glob').value || '*');
    else render();
  }
  window.addEventListener('hashchange', route);
  route();
  void follow();
  void loadJobs();
  setInterval(loadJobs, 30_000);
  setInterval(dirty, 1_000);
})();
