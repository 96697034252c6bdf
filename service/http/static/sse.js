// A small server-sent events parser for a fetch() body: EventSource only does GET, the stream is a POST.
// Feed it text chunks as they arrive (split anywhere, even inside "\r\n"); it calls onEvent({event, id, data})
// for every complete event, as the HTML standard's event-stream rules say (comments and unknown fields ignored).
"use strict";

class SSEParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.pendingCR = false; // a chunk ended with "\r": a "\n" starting the next one belongs to it
    this.id = ""; // the last event id: it carries over to later events, as in EventSource
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
  }

  push(chunk) {
    if (chunk === "") return;
    if (this.pendingCR && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.pendingCR = chunk.endsWith("\r");
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // the last piece has no line end yet
    for (const line of lines) this.line(line);
  }

  // the body ended: an event without its blank line is dropped, as in EventSource
  end() {
    this.buffer = "";
    this.reset();
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent({ event: this.event || "message", id: this.id, data: this.data.join("\n") });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

if (typeof module !== "undefined") module.exports = { SSEParser };
