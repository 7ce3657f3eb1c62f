import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeHttp } from '../src/client/http.js';
import { socketGet } from '../src/socket-get.js';

/** A server that answers each connection by `answer`, once it has read the request's head. */
async function holder(answer: (socket: Socket, request: string) => void): Promise<{ url: string; server: Server }> {
  const server = createServer((socket) => {
    let request = '';
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      request += chunk.toString('latin1');
      if (request.includes('\r\n\r\n')) answer(socket, request);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/api/v1/data/some/url?x=1`, server };
}

/** Writes `parts` one turn of the event loop apart, so they arrive as separate reads. */
async function dribble(socket: Socket, parts: Buffer[]): Promise<void> {
  for (const part of parts) {
    socket.write(part);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('socketGet', function () {
  const servers: Server[] = [];
  afterEach(() => {
    for (const server of servers.splice(0)) server.close();
  });
  const serve = async (answer: (socket: Socket, request: string) => void) => {
    const { url, server } = await holder(answer);
    servers.push(server);
    return new URL(url);
  };

  it('reads a body straight into the given buffers, whether it comes with the head or after, in any pieces', async function () {
    const body = randomBytes(300_000);
    let seen = '';
    const url = await serve((socket, request) => {
      seen = request;
      const head = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
      // The head arrives split, the first body bytes with its end, the rest in odd pieces.
      void dribble(socket, [head.subarray(0, 10), Buffer.concat([head.subarray(10), body.subarray(0, 1000)]), body.subarray(1000, 70_001), body.subarray(70_001)]).then(() => socket.end());
    });
    const answer = await socketGet(url, { authorization: 'Bearer t0k' }, 5000);
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['content-type'], 'application/octet-stream');
    assert.equal(answer.length, body.length);
    assert.match(seen, /^GET \/api\/v1\/data\/some\/url\?x=1 HTTP\/1\.1\r\n/);
    assert.match(seen, /\r\nauthorization: Bearer t0k\r\n/);
    // Reads in 4 kB pieces, then whatever is left in one.
    const parts: Buffer[] = [];
    for (let k = 0; k < 10; k++) {
      const piece = Buffer.alloc(4096);
      assert.equal(await answer.fill(piece), 4096);
      parts.push(piece);
    }
    const rest = Buffer.alloc(body.length);
    const restBytes = await answer.fill(rest);
    assert.equal(restBytes, body.length - 40_960);
    assert.ok(Buffer.concat([...parts, rest.subarray(0, restBytes)]).equals(body));
    assert.equal(await answer.fill(Buffer.alloc(10)), 0, 'nothing after the end');
    answer.close();
  });

  it('reaches a holder at an IPv6 address', async function () {
    const server = createServer((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
    const { port } = server.address() as { port: number };
    const answer = await socketGet(new URL(`http://[::1]:${port}/x`), {}, 5000);
    const body = Buffer.alloc(2);
    await answer.fill(body);
    assert.equal(body.toString(), 'ok');
  });

  it('gives an empty body and an error answer as they came', async function () {
    const empty = await serve((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const none = await socketGet(empty, {}, 5000);
    assert.equal(none.length, 0);
    assert.equal(await none.fill(Buffer.alloc(8)), 0);
    const detail = JSON.stringify({ error: 'not_found', detail: 'no data "some/url" on this host' });
    const missing = await serve((socket) => socket.end(`HTTP/1.1 404 Not Found\r\nContent-Length: ${detail.length}\r\n\r\n${detail}`));
    const answer = await socketGet(missing, {}, 5000);
    assert.equal(answer.status, 404);
    const text = Buffer.alloc(answer.length);
    await answer.fill(text);
    assert.equal(text.toString(), detail);
  });

  it('fails, never returns short, when the holder stops midway, goes silent, or does not speak our HTTP', async function () {
    const cut = await serve((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789'));
    const partial = await socketGet(cut, {}, 5000);
    await assert.rejects(partial.fill(Buffer.alloc(1000)), /ended after 10 of 1000 bytes/);

    const silent = await serve(() => {});
    await assert.rejects(socketGet(silent, {}, 200), /no byte from http:\/\/127\.0\.0\.1:\d+ for 200 ms/);

    const chunked = await serve((socket) => socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'));
    await assert.rejects(socketGet(chunked, {}, 5000), /answered 200 without a Content-Length \(Transfer-Encoding chunked\)/);

    const garbage = await serve((socket) => socket.end('SSH-2.0-OpenSSH\r\n\r\n'));
    await assert.rejects(socketGet(garbage, {}, 5000), /did not answer HTTP/);

    const hangUp = await serve((socket) => socket.destroy());
    await assert.rejects(socketGet(hangUp, {}, 5000), /closed the connection before answering/);

    const { server } = await holder(() => {});
    const { port } = server.address() as { port: number };
    server.close();
    await assert.rejects(socketGet(new URL(`http://127.0.0.1:${port}/x`), {}, 5000), /ECONNREFUSED/);
    await assert.rejects(socketGet(new URL('https://127.0.0.1/x'), {}, 5000), /http:\/\/ urls only/);
  });

  it('refuses, before allocating, a download bigger than a Buffer holds, and points to localPath()', async function () {
    let answered = false;
    const huge = await serve((socket) => {
      answered = true;
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 9000000000\r\n\r\n');
    });
    const http = new NodeHttp(huge.origin);
    await assert.rejects(http.download(huge.href), /holds 9000000000 bytes, more than one Buffer can \(\d+\): read it with localPath\(\)/);
    assert.ok(answered);
    http.close();
  });

  it('removes the file of a download to disk that the holder cut short', async function () {
    const cut = await serve((socket) => void dribble(socket, [Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n'), randomBytes(3_000_000)]).then(() => socket.destroy()));
    const http = new NodeHttp(cut.origin);
    const path = join(tmpdir(), `ks-socket-get-test-${process.pid}`);
    await assert.rejects(http.downloadTo(cut.href, path), /ended after 3000000 of 5000000 bytes/);
    assert.equal(existsSync(path), false, 'no partial file');
    http.close();
  });
});
