// The test page of `turncheck serve`: GET <page>/config, test every ICE server of the
// profile in this browser (all at once, within the config's budget), POST <page>/results,
// show the reference ID and the server's summary.
//
// Plain ES2020 and the standard WebRTC API (no adapter.js, no prefixes). The page runs
// under a strict CSP: no inline script or style, same-origin fetches only. Text that comes
// from a server or a browser (URLs, summaries, error texts) goes in with textContent only.
// Credentials from the config are used for RTCPeerConnection and nothing else: never shown,
// logged or posted.
"use strict";

(() => {
  const T0 = performance.now();
  const MAX_LIST = 50; // candidates and errors kept per gather
  const MAX_TEXT = 300; // characters kept of any browser- or server-given text
  const MAX_BODY = 64 * 1024; // the results document, in bytes
  const POST_RESERVE_MS = 4000; // kept of the budget for the POST
  const CONNECT_TIMEOUT_MS = 10000;
  const PING_EVERY_MS = 20;
  const ECHO_GRACE_MS = 300;
  const BULK_MS = 1000;
  const BULK_CHUNK = 16 * 1024;
  const BULK_HIGH_WATER = 1024 * 1024;
  const BULK_LOW_WATER = 256 * 1024;
  const DEFAULT_PORTS = { stun: 3478, turn: 3478, stuns: 5349, turns: 5349 };

  const state = { phase: "loading", progress: 0, results: null, answer: null, error: null };
  window.turncheckState = state;

  const $ = (id) => document.getElementById(id);
  const now = () => performance.now();
  const round1 = (x) => Math.round(x * 10) / 10;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
  const orNull = (v) => (v === undefined || v === null ? null : v);
  const text = (v) => (v === undefined || v === null ? null : String(v).slice(0, MAX_TEXT));
  const number = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const setState = (changes) => Object.assign(state, changes);

  // -- what the page shows ------------------------------------------------------------

  function setProgress(fraction) {
    const value = Math.max(state.progress, Math.min(1, fraction));
    state.progress = Math.round(value * 1000) / 1000;
    const bar = $("progress");
    bar.value = Math.round(state.progress * 100);
    bar.textContent = `${bar.value}%`;
  }

  function say(sentence) {
    $("status").textContent = sentence;
  }

  function describeUrl(url) {
    // "turns:turn.example.com:443?transport=tcp" → "TLS, port 443" (the port only when it
    // is not the scheme's default).
    const match = /^(stuns?|turns?):(\[[^\]]*\]|[^:?]*)(?::(\d+))?(?:\?(.*))?$/i.exec(url);
    if (!match) return "unknown kind";
    const scheme = match[1].toLowerCase();
    const query = (match[4] || "").toLowerCase();
    let kind = "STUN";
    if (scheme === "stuns") kind = "STUN over TLS";
    else if (scheme === "turns") kind = "TLS";
    else if (scheme === "turn") kind = query.includes("transport=tcp") ? "TCP" : "UDP";
    const port = match[3] ? Number(match[3]) : DEFAULT_PORTS[scheme];
    return port === DEFAULT_PORTS[scheme] ? kind : `${kind}, port ${port}`;
  }

  function hostOf(url) {
    const match = /^[a-z]+:(\[[^\]]*\]|[^:?]*)/i.exec(url);
    return match ? match[1].toLowerCase() : url;
  }

  function addLine(name, url) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const status = document.createElement("span");
    item.append(label, status);
    if (url) {
      const detail = document.createElement("span");
      detail.className = "url";
      detail.textContent = url;
      item.append(detail);
    }
    $("servers").append(item);
    const line = {
      set(kind, words) {
        status.className = `state ${kind}`;
        status.textContent = words;
      },
    };
    line.set("pending", "testing…");
    return line;
  }

  function errorWords(errors) {
    const codes = [...new Set(errors.map((e) => e.code).filter((c) => c !== null))];
    if (codes.includes(401)) return "refused the sign-in (error 401)";
    if (codes.length) return `no answer (error ${codes.join(", ")})`;
    return "no answer";
  }

  function gatherWords(url, rec) {
    if (rec.exception) return ["bad", "not accepted by this browser"];
    const relay = rec.candidates.some((c) => c.type === "relay");
    const srflx = rec.candidates.some((c) => c.type === "srflx");
    if (/^turns?:/i.test(url)) {
      if (relay) return ["ok", "reachable"];
      return ["bad", errorWords(rec.errors)];
    }
    if (srflx) return ["ok", "reachable"];
    if (rec.errors.length) return ["bad", errorWords(rec.errors)];
    return ["warn", rec.complete ? "no reply seen" : "no answer"];
  }

  function relayWords(rec) {
    if (rec.connected && rec.received > 0 && rec.rtt_ms) {
      return ["ok", `relayed data, ${Math.round(rec.rtt_ms.p50)} ms`];
    }
    if (rec.connected) return ["warn", "connected, but no test data came back"];
    return ["bad", "could not relay data"];
  }

  // -- one RTCPeerConnection gathering candidates (as the Trickle ICE page does) --------

  const live = new Set(); // every RTCPeerConnection not yet closed

  function open(config) {
    const pc = new RTCPeerConnection(config);
    live.add(pc);
    return pc;
  }

  function close(pc) {
    if (!pc) return;
    live.delete(pc);
    try {
      pc.close();
    } catch (_) {
      // already closed
    }
  }

  function scrub(message, secrets) {
    let out = String(message);
    for (const secret of secrets) {
      if (secret) out = out.split(secret).join("***");
    }
    return out;
  }

  function exceptionOf(e, secrets) {
    return {
      name: text((e && e.name) || "Error"),
      message: text(scrub((e && e.message) || e, secrets)),
    };
  }

  function withTimeout(promise, ms) {
    return Promise.race([promise, sleep(ms).then(() => null)]);
  }

  // "candidate:1 1 udp 2122260223 192.0.2.2 47747 typ host raddr ... rport ..."
  function parseCandidateLine(line) {
    const f = String(line || "").replace(/^a=/, "").split(/\s+/);
    const out = {};
    if (f.length >= 8 && f[6] === "typ") {
      out.protocol = f[2].toLowerCase();
      out.address = f[4];
      out.port = Number(f[5]);
      out.type = f[7];
      for (let k = 8; k + 1 < f.length; k += 2) {
        if (f[k] === "raddr") out.relatedAddress = f[k + 1];
        if (f[k] === "rport") out.relatedPort = Number(f[k + 1]);
      }
    }
    return out;
  }

  function candidateOf(c, event, ms) {
    const parsed = parseCandidateLine(c.candidate);
    const given = (name) => c[name] !== undefined && c[name] !== null;
    const pick = (name) => orNull(given(name) ? c[name] : parsed[name]);
    return {
      type: text(pick("type")),
      protocol: text(pick("protocol")),
      address: text(pick("address")),
      port: number(pick("port")),
      relatedAddress: text(pick("relatedAddress")),
      relatedPort: number(pick("relatedPort")),
      relayProtocol: text(c.relayProtocol),
      url: text(c.url !== undefined ? c.url : event.url),
      ms,
    };
  }

  async function fillRelayProtocols(pc, candidates) {
    // Firefox leaves candidate.relayProtocol undefined and Chromium leaves it null for a
    // relay over UDP: the local-candidate entries of getStats() carry it.
    if (!candidates.some((c) => c.type === "relay" && c.relayProtocol === null)) return;
    const report = await withTimeout(pc.getStats(), 1000);
    if (!report) return;
    const byAddress = new Map();
    report.forEach((s) => {
      if (s.type === "local-candidate" && s.relayProtocol) {
        byAddress.set(`${s.address || s.ip}:${s.port}`, String(s.relayProtocol));
      }
    });
    for (const c of candidates) {
      if (c.type === "relay" && c.relayProtocol === null) {
        c.relayProtocol = orNull(byAddress.get(`${c.address}:${c.port}`));
      }
    }
  }

  function gatherTest(iceServers, url, server, secrets, gatherMs, deadline) {
    const rec = {
      url,
      server,
      ms: 0,
      complete: false,
      exception: null,
      candidates: [],
      errors: [],
    };
    const test = { rec, done: false, started: now() };
    test.fraction = () => (test.done ? 1 : Math.min(0.95, (now() - test.started) / gatherMs));
    test.run = async () => {
      const t0 = now();
      const ms = () => round1(now() - t0);
      let pc = null;
      try {
        pc = open({ iceServers });
      } catch (e) {
        rec.exception = exceptionOf(e, secrets);
        rec.ms = ms();
        return rec;
      }
      try {
        let finish;
        const complete = new Promise((resolve) => {
          finish = resolve;
        });
        pc.onicecandidate = (event) => {
          const c = event.candidate;
          if (!c || !c.candidate) return; // end of candidates ("" in Firefox, then null)
          if (rec.candidates.length < MAX_LIST) rec.candidates.push(candidateOf(c, event, ms()));
        };
        pc.onicecandidateerror = (event) => {
          if (rec.errors.length >= MAX_LIST) return;
          rec.errors.push({
            url: text(event.url),
            code: number(event.errorCode),
            text: text(scrub(orNull(event.errorText) ?? "", secrets)),
            ms: ms(),
          });
        };
        pc.onicegatheringstatechange = () => {
          if (pc.iceGatheringState === "complete") {
            rec.ms = ms();
            finish();
          }
        };
        pc.createDataChannel("turncheck");
        await pc.setLocalDescription(await pc.createOffer());
        await Promise.race([complete, sleep(Math.min(gatherMs, deadline - now()))]);
        rec.complete = pc.iceGatheringState === "complete";
        if (!rec.complete) rec.ms = ms();
        await sleep(0); // a last queued candidate event
        await fillRelayProtocols(pc, rec.candidates);
      } catch (e) {
        rec.exception = exceptionOf(e, secrets);
        rec.ms = ms();
      } finally {
        close(pc);
      }
      return rec;
    };
    return test;
  }

  // -- two RTCPeerConnections of this page talking through one TURN URL ----------------

  function summarise(samples) {
    if (!samples.length) return null;
    const sorted = [...samples].sort((a, b) => a - b);
    const last = sorted.length - 1;
    const rank = (p) => sorted[Math.min(last, Math.max(0, Math.ceil(p * sorted.length) - 1))];
    return {
      min: round1(sorted[0]),
      p50: round1(rank(0.5)),
      p95: round1(rank(0.95)),
      max: round1(sorted[sorted.length - 1]),
    };
  }

  async function selectedLocal(pc) {
    const report = await withTimeout(pc.getStats(), 1000);
    if (!report) return null;
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId && !pair) {
        pair = report.get(s.selectedCandidatePairId) || null;
      }
    });
    if (!pair) {
      // Firefox: no transport entry; its candidate-pair entries say "selected".
      report.forEach((s) => {
        if (s.type === "candidate-pair" && s.selected && !pair) pair = s;
      });
    }
    const local = pair && report.get(pair.localCandidateId);
    if (!local) return null;
    return {
      type: text(local.candidateType),
      protocol: text(local.protocol),
      relayProtocol: text(local.relayProtocol),
    };
  }

  function relayTest(server, url, creds, secrets, cfg, deadline) {
    const rec = {
      url,
      server,
      connected: false,
      connect_ms: null,
      state: null,
      local: null,
      sent: 0,
      received: 0,
      rtt_ms: null,
      throughput_kbps: null,
      error: null,
    };
    const pingMs = Math.max(1000, (cfg.relay_s - 1) * 1000);
    const test = { rec, done: false, started: now(), connectedAt: null };
    test.fraction = () => {
      if (test.done) return 1;
      if (test.connectedAt === null) {
        return 0.3 * Math.min(1, (now() - test.started) / CONNECT_TIMEOUT_MS);
      }
      const measuring = pingMs + ECHO_GRACE_MS + BULK_MS;
      return 0.3 + 0.65 * Math.min(1, (now() - test.connectedAt) / measuring);
    };
    test.run = async () => {
      const config = {
        iceServers: [{ urls: [url], ...creds }],
        iceTransportPolicy: "relay",
      };
      let a = null;
      let b = null;
      const errors = [];
      try {
        a = open(config);
        b = open(config);
      } catch (e) {
        const ex = exceptionOf(e, secrets);
        rec.error = text(`not accepted by this browser: ${ex.name}: ${ex.message}`);
        close(a);
        return rec;
      }
      try {
        await connectAndMeasure(a, b, rec, test, errors, pingMs, deadline, secrets);
      } catch (e) {
        const ex = exceptionOf(e, secrets);
        if (!rec.error) rec.error = text(`${ex.name}: ${ex.message}`);
      } finally {
        rec.state = text(a.connectionState);
        close(a);
        close(b);
      }
      return rec;
    };
    return test;
  }

  async function connectAndMeasure(a, b, rec, test, errors, pingMs, deadline, secrets) {
    const t0 = test.started;
    const pairs = [
      [a, b],
      [b, a],
    ];
    const counts = new Map([
      [a, 0],
      [b, 0],
    ]);
    const remoteSet = { a: null, b: null };
    const remoteReady = {
      a: new Promise((r) => {
        remoteSet.a = r;
      }),
      b: new Promise((r) => {
        remoteSet.b = r;
      }),
    };
    let wake;
    let changed = new Promise((r) => {
      wake = r;
    });
    const poke = () => {
      const w = wake;
      changed = new Promise((r) => {
        wake = r;
      });
      w();
    };
    for (const [pc, other] of pairs) {
      const ready = other === a ? remoteReady.a : remoteReady.b;
      pc.onicecandidate = (event) => {
        const c = event.candidate;
        if (!c || !c.candidate) return;
        counts.set(pc, counts.get(pc) + 1);
        const init = c.toJSON();
        ready.then(() => other.addIceCandidate(init)).catch(() => {});
      };
      pc.onicecandidateerror = (event) => {
        if (errors.length < MAX_LIST) {
          const words = text(scrub(event.errorText || "", secrets));
          errors.push({ code: number(event.errorCode), text: words });
        }
        poke();
      };
      pc.onicegatheringstatechange = poke;
      pc.onconnectionstatechange = poke;
    }
    // Negotiated channels exist on both sides at once: no ondatachannel round trip.
    const ping = [a, b].map((pc) =>
      pc.createDataChannel("ping", { negotiated: true, id: 1, ordered: false, maxRetransmits: 0 })
    );
    const bulk = [a, b].map((pc) => pc.createDataChannel("bulk", { negotiated: true, id: 2 }));
    for (const ch of [...ping, ...bulk]) {
      ch.binaryType = "arraybuffer";
      ch.onopen = poke;
    }
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    remoteSet.b();
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    remoteSet.a();

    const connectBy = Math.min(t0 + CONNECT_TIMEOUT_MS, deadline);
    const noCandidate = (pc) => pc.iceGatheringState === "complete" && counts.get(pc) === 0;
    for (;;) {
      if ([...ping, ...bulk].every((ch) => ch.readyState === "open")) break;
      if (a.connectionState === "failed" || b.connectionState === "failed") {
        rec.error = text(withCodes("connection failed", errors));
        return;
      }
      if (noCandidate(a) || noCandidate(b)) {
        rec.error = text(withCodes("no relay candidate", errors));
        return;
      }
      const left = connectBy - now();
      if (left <= 0) {
        const waited = Math.round((connectBy - t0) / 1000);
        rec.error = text(withCodes(`no connection within ${waited} s`, errors));
        return;
      }
      await Promise.race([changed, sleep(Math.min(left, 250))]);
    }
    rec.connected = true;
    rec.connect_ms = round1(now() - t0);
    test.connectedAt = now();

    // Numbered messages every 20 ms on the unreliable channel; the far side echoes them.
    const [pingA, pingB] = ping;
    const rtts = [];
    const echoed = new Set();
    pingB.onmessage = (m) => {
      try {
        pingB.send(m.data);
      } catch (_) {
        // closing
      }
    };
    pingA.onmessage = (m) => {
      const [seq, sentAt] = String(m.data).split(",").map(Number);
      if (!Number.isFinite(seq) || echoed.has(seq)) return;
      echoed.add(seq);
      rec.received = echoed.size;
      rtts.push(now() - sentAt);
    };
    const pingUntil = Math.min(now() + pingMs, deadline - ECHO_GRACE_MS - BULK_MS);
    let seq = 0;
    while (now() < pingUntil && pingA.readyState === "open") {
      pingA.send(`${seq},${now()}`);
      seq += 1;
      rec.sent = seq;
      await sleep(PING_EVERY_MS);
    }
    await sleep(Math.min(ECHO_GRACE_MS, deadline - now()));
    rec.rtt_ms = summarise(rtts);

    // About a second of bulk data on the reliable channel; the far side counts it.
    const [bulkA, bulkB] = bulk;
    let received = 0;
    bulkB.onmessage = (m) => {
      received += m.data.byteLength !== undefined ? m.data.byteLength : String(m.data).length;
    };
    const chunk = new Uint8Array(BULK_CHUNK);
    const bulkStart = now();
    const bulkEnd = Math.min(bulkStart + BULK_MS, deadline);
    const pump = () => {
      const room = () => bulkA.readyState === "open" && bulkA.bufferedAmount < BULK_HIGH_WATER;
      while (now() < bulkEnd && room()) bulkA.send(chunk);
    };
    bulkA.bufferedAmountLowThreshold = BULK_LOW_WATER;
    bulkA.onbufferedamountlow = pump;
    pump();
    await sleep(bulkEnd - now());
    bulkA.onbufferedamountlow = null;
    const took = now() - bulkStart;
    if (took > 0 && received > 0) rec.throughput_kbps = Math.round((received * 8) / took);
    rec.local = await selectedLocal(a);
    if (rec.received === 0) rec.error = "connected, but no test message came back";
  }

  function withCodes(words, errors) {
    const seen = [];
    for (const e of errors) {
      const item = e.code !== null ? `${e.code}${e.text ? ` ${e.text}` : ""}` : e.text;
      if (item && !seen.includes(item)) seen.push(item);
    }
    return seen.length ? `${words} (TURN error ${seen.slice(0, 3).join("; ")})` : words;
  }

  // -- the run ---------------------------------------------------------------------

  function iceUrls(iceServers) {
    const out = [];
    iceServers.forEach((entry, server) => {
      const urls = entry && entry.urls;
      const list = Array.isArray(urls) ? urls : urls === undefined || urls === null ? [] : [urls];
      for (const url of list) {
        const creds = {};
        if (entry.username !== undefined) creds.username = entry.username;
        if (entry.credential !== undefined) creds.credential = entry.credential;
        out.push({ server, url: String(url), creds });
      }
    });
    return out;
  }

  function browserInfo() {
    const data = navigator.userAgentData;
    let brands = null;
    if (data && Array.isArray(data.brands)) {
      brands = data.brands.map((b) => ({ brand: text(b.brand), version: text(b.version) }));
    }
    return { userAgent: text(navigator.userAgent), brands };
  }

  function shrink(doc) {
    // Keep the document under MAX_BODY: shorter candidate and error lists first.
    let body = JSON.stringify(doc);
    const tooLarge = () => new Blob([body]).size > MAX_BODY;
    for (let cap = MAX_LIST; tooLarge() && cap > 0; cap = Math.floor(cap / 2)) {
      for (const g of doc.gathers) {
        g.candidates = g.candidates.slice(0, cap);
        g.errors = g.errors.slice(0, cap);
      }
      body = JSON.stringify(doc);
    }
    return body;
  }

  async function fetchJson(url, init, timeoutMs) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      const response = await fetch(url, {
        cache: "no-store",
        credentials: "same-origin",
        ...init,
        signal: abort.signal,
      });
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
      return { response, body };
    } finally {
      clearTimeout(timer);
    }
  }

  function problem(response, body, fallback) {
    if (body && typeof body.error === "string" && body.error) return body.error.slice(0, MAX_TEXT);
    if (response) return `${fallback} (the server answered HTTP ${response.status})`;
    return fallback;
  }

  function fail(message, retry) {
    setState({ phase: "error", error: message });
    say("The test stopped.");
    $("progress").hidden = true;
    $("error").textContent = message;
    $("failure").hidden = false;
    $("retry").onclick = retry;
  }

  async function loadConfig(base) {
    let got;
    try {
      got = await fetchJson(`${base}/config`, {}, 15000);
    } catch (_) {
      throw new Error("Could not load the test settings: check your connection and try again.");
    }
    const { response, body } = got;
    if (!response.ok || !body || typeof body !== "object") {
      throw new Error(problem(response, body, "Could not load the test settings"));
    }
    if (!Array.isArray(body.iceServers)) throw new Error("The test settings have no server list.");
    return body;
  }

  async function runTests(cfg) {
    const budgetMs = (number(cfg.budget_s) || 30) * 1000;
    const settings = {
      gather_s: number(cfg.gather_s) || 10,
      relay_s: number(cfg.relay_s) || 4,
    };
    const deadline = T0 + budgetMs - POST_RESERVE_MS;
    const gatherMs = settings.gather_s * 1000;
    const entries = iceUrls(cfg.iceServers);
    const secrets = entries
      .flatMap((e) => [e.creds.username, e.creds.credential])
      .filter((s) => typeof s === "string" && s.length >= 4);

    const gathers = [];
    const relays = [];
    const jobs = [];
    // Servers are numbered by host, as a user tells them apart: one iceServers entry may
    // list several hosts, and several entries the same host.
    const hosts = [];
    for (const { server, url, creds } of entries) {
      const host = hostOf(url);
      if (!hosts.includes(host)) hosts.push(host);
      const line = addLine(`Call server ${hosts.indexOf(host) + 1} (${describeUrl(url)})`, url);
      const iceServers = [{ urls: [url], ...creds }];
      const gather = gatherTest(iceServers, url, server, secrets, gatherMs, deadline);
      gathers.push(gather);
      const isTurn = /^turns?:/i.test(url);
      const relay = isTurn ? relayTest(server, url, creds, secrets, settings, deadline) : null;
      if (relay) relays.push(relay);
      const gathered = gather.run().then(() => {
        gather.done = true;
        if (relay && relay.done) return;
        const [kind, words] = gatherWords(url, gather.rec);
        if (relay && kind === "ok") line.set("pending", "reachable; sending test data…");
        else line.set(kind, words);
      });
      jobs.push(gathered);
      if (relay) {
        jobs.push(
          relay.run().then(async () => {
            relay.done = true;
            await gathered;
            const [gKind, gWords] = gatherWords(url, gather.rec);
            const [kind, words] = relayWords(relay.rec);
            // A relay that failed where gathering already said why: say that.
            line.set(kind, kind === "bad" && gKind === "bad" ? gWords : words);
          })
        );
      }
    }
    const whole = gatherTest(cfg.iceServers, null, null, secrets, gatherMs, deadline);
    gathers.push(whole);
    const wholeLine = addLine("All servers together", null);
    jobs.push(
      whole.run().then(() => {
        whole.done = true;
        const rec = whole.rec;
        const answered = rec.candidates.some((c) => c.type === "relay" || c.type === "srflx");
        if (rec.exception) wholeLine.set("bad", "this browser rejects the server list");
        else if (answered) wholeLine.set("ok", "reachable");
        else wholeLine.set("warn", "no reply seen");
      })
    );

    const tests = [...gathers, ...relays];
    const tick = setInterval(() => {
      const mean = tests.reduce((sum, t) => sum + t.fraction(), 0) / Math.max(1, tests.length);
      setProgress(0.05 + 0.85 * mean);
    }, 200);
    try {
      // Every test ends by the deadline on its own; this bound is the backstop.
      await Promise.race([Promise.all(jobs), sleep(deadline - now() + 1500)]);
    } finally {
      clearInterval(tick);
      for (const pc of [...live]) close(pc);
    }
    for (const relay of relays) {
      if (!relay.done && !relay.rec.error) relay.rec.error = "out of time";
    }
    return {
      version: 1,
      token: cfg.token,
      profile: cfg.profile,
      browser: browserInfo(),
      elapsed_ms: 0,
      gathers: gathers.map((g) => g.rec),
      relays: relays.map((r) => r.rec),
    };
  }

  // postMs: how long the POST may take: serve checks the same servers itself before it
  // answers (its /config says how long that may take: post_s).
  async function send(base, doc, postMs) {
    setState({ phase: "sending", error: null });
    $("failure").hidden = true;
    $("progress").hidden = false;
    say("Sending the results…");
    setProgress(0.92);
    if (!doc.elapsed_ms) doc.elapsed_ms = Math.round(now() - T0); // a retry keeps the run's
    const body = shrink(doc);
    setState({ results: JSON.parse(body) });
    let got;
    try {
      got = await fetchJson(
        `${base}/results`,
        { method: "POST", headers: { "Content-Type": "application/json" }, body },
        postMs
      );
    } catch (_) {
      const again = () => send(base, doc, postMs);
      fail("Could not send the results: check your connection and try again.", again);
      return;
    }
    const { response, body: answer } = got;
    setState({ answer });
    if (!response.ok || !answer || typeof answer.id !== "string") {
      // A server error may pass: send the same results again. A refusal (an expired
      // link, say) will not: run the test again from a fresh config.
      const again =
        response.status >= 500 ? () => send(base, doc, postMs) : () => location.reload();
      fail(problem(response, answer, "The server did not accept the results"), again);
      return;
    }
    show(answer);
  }

  function show(answer) {
    const summary = typeof answer.summary === "string" ? answer.summary : "";
    const copyText = `Reference ${answer.id}: ${summary}`;
    $("ref").textContent = answer.id;
    $("summary").textContent = summary;
    const result = $("result");
    result.classList.add(answer.ok ? "ok" : "not-ok");
    result.hidden = false;
    $("copytext").value = copyText;
    $("copy").onclick = () => copy(copyText);
    $("intro").textContent = "The test is finished. Please send the reference below to support.";
    say(`Finished in ${Math.max(1, Math.round(state.results.elapsed_ms / 1000))} s.`);
    setProgress(1);
    $("progress").hidden = true;
    setState({ phase: "done", error: null });
  }

  async function copy(value) {
    const note = $("copied");
    try {
      // Only in a secure context (https, localhost); plain http has no navigator.clipboard.
      await navigator.clipboard.writeText(value);
      note.textContent = "Copied.";
      return;
    } catch (_) {
      // fall back to a selected text box
    }
    const box = $("copytext");
    box.hidden = false;
    box.focus();
    box.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (_) {
      copied = false;
    }
    note.textContent = copied ? "Copied." : "Selected: press Ctrl+C (or touch and hold) to copy.";
  }

  async function main() {
    document.documentElement.classList.add("js");
    const base = location.pathname.replace(/\/+$/, "");
    setProgress(0.01);
    let cfg;
    try {
      cfg = await loadConfig(base);
    } catch (e) {
      fail(e.message, () => location.reload());
      return;
    }
    if (typeof cfg.title === "string" && cfg.title) {
      const title = `Connection test: ${cfg.title}`;
      $("title").textContent = title;
      document.title = title;
    }
    setState({ phase: "running" });
    say("Testing the call servers…");
    setProgress(0.05);
    const doc = await runTests(cfg);
    await send(base, doc, (number(cfg.post_s) || 25) * 1000);
  }

  main().catch((e) => {
    const why = text((e && e.message) || e);
    fail(`The test failed in this browser: ${why}`, () => location.reload());
  });
})();
