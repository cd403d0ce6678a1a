// A Slack-compatible incoming webhook for the end-to-end suite: it records every JSON
// post to /services/<token> and lists what it got at GET /received (newest last).
// Loopback only; no dependencies. Started and stopped by Playwright (playwright.config.ts).
import http from 'node:http';

const port = Number(process.env.CHAT_PORT ?? 3104);
const received = [];
const MAX_BODY = 64 * 1024;
const MAX_KEPT = 1000;

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (req.method === 'GET' && url.pathname === '/received') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(received));
    return;
  }
  if (req.method === 'POST' && url.pathname.startsWith('/services/')) {
    let body = '';
    let tooBig = false;
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > MAX_BODY) tooBig = true;
    });
    req.on('end', () => {
      if (tooBig) {
        res.writeHead(413).end('too large');
        return;
      }
      let json;
      try {
        json = JSON.parse(body);
      } catch {
        res.writeHead(400).end('invalid_payload');
        return;
      }
      if (received.length >= MAX_KEPT) received.shift();
      received.push({ path: url.pathname, contentType: req.headers['content-type'] ?? '', body: json });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
    return;
  }
  res.writeHead(404).end('not found');
});

server.listen(port, '127.0.0.1', () => {
  console.log(`chat receiver on http://127.0.0.1:${port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
