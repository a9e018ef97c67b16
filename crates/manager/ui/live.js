// Live updates: the Manager's UI stream (GET /ui/stream?env=NAME, Server-Sent Events).
// EventSource cannot send an Authorization header, so the stream is read with fetch() and
// a small SSE parser. On `event: changed` the current view re-fetches its JSON (debounced);
// when the stream ends it reconnects with backoff (0.5 s doubling to 15 s; back to 0.5 s once
// a stream has stayed up 10 s). No polling.

import { authHeaders, enc } from './api.js';

/** Feeds SSE text to `onEvent({event, data, id})`; returns a function taking each chunk. */
export function sseParser(onEvent) {
  let buffer = '';
  let event = '';
  let data = [];
  let id = '';
  const line = (l) => {
    if (l === '') {
      if (data.length > 0 || event) onEvent({ event: event || 'message', data: data.join('\n'), id });
      event = '';
      data = [];
      return;
    }
    if (l.startsWith(':')) return; // a comment: heartbeat
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  };
  return (chunk) => {
    buffer += chunk;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    lines.forEach(line);
  };
}

/**
 * Follows `env`: calls `onChange(data)` (debounced 100 ms) on each `changed` event and
 * `onState(state, detail)` with 'connecting', 'live', 'reconnecting', 'unavailable'
 * (the Manager has no stream) or 'unauthorized'. Returns a function that stops it.
 */
export function follow(env, onChange, onState) {
  let stopped = false;
  let controller = null;
  let timer = null;
  let delay = 500;
  const changed = (data) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (!stopped) onChange(data);
    }, 100);
  };
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      onState('connecting');
      try {
        const res = await fetch(`/ui/stream?env=${enc(env)}`, {
          headers: authHeaders('text/event-stream'),
          signal: controller.signal,
          cache: 'no-store',
          credentials: 'omit',
        });
        if (res.status === 401 || res.status === 403) {
          let message = `${res.status}`;
          try {
            message = (await res.json()).message || message;
          } catch {
            // not JSON
          }
          onState('unauthorized', message, res.status);
          return;
        }
        if (res.status === 404 || res.status === 405) {
          onState('unavailable');
          return;
        }
        if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
        onState('live');
        const since = Date.now();
        const feed = sseParser((ev) => {
          if (ev.event !== 'changed') return;
          let data = null;
          try {
            data = JSON.parse(ev.data);
          } catch {
            data = null;
          }
          changed(data);
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          feed(value);
          // A stream that stayed up a while resets the backoff; one that keeps ending at
          // once does not (no reconnect storm).
          if (Date.now() - since > 10000) delay = 500;
        }
      } catch {
        // aborted or a network error: reconnect below unless stopped
      }
      if (stopped) return;
      onState('reconnecting');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}
