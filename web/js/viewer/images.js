// Loads rendered images ahead of use and keeps the recent ones, so that scrolling through a
// stack shows each slice at once. An <img> with the same URL then shows the decoded image.

const KEEP = 160;        // images kept (most recently used)
const PARALLEL = 4;      // prefetches at a time

export class ImageCache {
  constructor() {
    this.entries = new Map();   // url → { img, promise, state }
    this.waiting = [];          // prefetch URLs not started yet
    this.running = 0;
  }

  /** Resolves with the loaded Image, or rejects with an Error saying why not. */
  load(url) {
    let entry = this.entries.get(url);
    if (entry) {
      this.entries.delete(url);     // move to the most recent end
      this.entries.set(url, entry);
      return entry.promise;
    }
    const img = new Image();
    img.decoding = 'async';
    entry = { img, state: 'loading' };
    entry.promise = new Promise((resolve, reject) => {
      img.onload = () => {
        entry.state = 'loaded';
        (img.decode ? img.decode().catch(() => {}) : Promise.resolve()).then(() => resolve(img));
      };
      img.onerror = () => {
        entry.state = 'failed';
        this.entries.delete(url);
        whyFailed(url).then((message) => reject(new Error(message)));
      };
    });
    entry.promise.catch(() => {});
    img.src = url;
    this.entries.set(url, entry);
    this.trim();
    return entry.promise;
  }

  isLoaded(url) {
    return this.entries.get(url)?.state === 'loaded';
  }

  /** Replaces the prefetch queue with these URLs (nearest first). */
  prefetch(urls) {
    this.waiting = urls.filter((u) => !this.entries.has(u));
    this.pump();
  }

  pump() {
    while (this.running < PARALLEL && this.waiting.length) {
      const url = this.waiting.shift();
      if (this.entries.has(url)) continue;
      this.running += 1;
      this.load(url).catch(() => {}).finally(() => { this.running -= 1; this.pump(); });
    }
  }

  trim() {
    while (this.entries.size > KEEP) {
      const oldest = this.entries.keys().next().value;
      this.entries.delete(oldest);
    }
  }

  clear() {
    this.waiting = [];
    this.entries.clear();
  }
}

/** An <img> says nothing about why it failed: ask the server once more for its message. */
async function whyFailed(url) {
  try {
    const response = await fetch(url, { headers: { Accept: 'application/json' } });
    if (response.ok) return 'The image could not be decoded by the browser.';
    let message = '';
    try { message = (await response.json()).Message || ''; } catch { /* not JSON */ }
    if (response.status === 404) return message || 'This image is no longer in the archive.';
    return message || `The server could not render this image (HTTP ${response.status}).`;
  } catch {
    return 'Cannot reach the server.';
  }
}
