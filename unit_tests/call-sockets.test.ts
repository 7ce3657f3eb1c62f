import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { CallSockets } from '../src/client/call-sockets.js';

interface Request {
  head: string;
  body: Buffer;
  /** Which connection (1, 2, ...) and which request on it. */
  connection: number;
}

/**
 * A node stand-in speaking raw HTTP/1.1: reads each request (head and Content-Length body) of
 * a keep-alive connection and lets `answer` write whatever bytes it likes.
 */
async function rawNode(answer: (socket: Socket, request: Request) => void | Promise<void>) {
  let connections = 0;
  let open = 0;
  let mostOpen = 0;
  const server = createServer((socket) => {
    const connection = ++connections;
    mostOpen = Math.max(mostOpen, ++open);
    socket.on('close', () => open--);
    socket.on('error', () => {});
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = pending.toString('latin1', 0, end);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        const body = pending.subarray(end + 4, end + 4 + length);
        pending = pending.subarray(end + 4 + length);
        void answer(socket, { head, body, connection });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, port, stats: () => ({ connections, open, mostOpen }) };
}

const ok = (body: Buffer | string, extra = '') => Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`), Buffer.from(body)]);
const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`;
const turn = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('CallSockets (the client connections that read answers into their own buffer)', function () {
  const servers: Server[] = [];
  const clients: CallSockets[] = [];
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
    for (const server of servers.splice(0)) server.close();
  });
  const start = async (answer: (socket: Socket, request: Request) => void | Promise<void>, maxSockets = 8) => {
    const node = await rawNode(answer);
    servers.push(node.server);
    const client = new CallSockets('127.0.0.1', node.port, `http://127.0.0.1:${node.port}`, { maxSockets, idleMs: 30_000 });
    clients.push(client);
    return { client, stats: node.stats };
  };

  it('reads a Content-Length body that comes with the head, after it, or in many pieces, and sends the body pieces in order', async function () {
    const big = randomBytes(3 * 1024 * 1024 + 7);
    const { client } = await start(async (socket, { head, body }) => {
      if (head.startsWith('POST /echo')) return void socket.write(ok(body));
      if (head.startsWith('GET /big')) return void socket.write(ok(big));
      // The head in two pieces, then the body in three.
      const whole = ok('split answer');
      for (const piece of [whole.subarray(0, 10), whole.subarray(10, whole.length - 8), whole.subarray(-8, -3), whole.subarray(-3)]) {
        socket.write(piece);
        await turn();
      }
    });
    const sent = [Buffer.from('one '), randomBytes(2 * 1024 * 1024), Buffer.from(' three')];
    const echoed = await client.request(`POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: ${Buffer.concat(sent).length}\r\n\r\n`, sent, 5_000);
    assert.deepEqual(echoed.body, Buffer.concat(sent));
    assert.deepEqual((await client.request(get('/big'), [], 5_000)).body, big);
    const split = await client.request(get('/split'), [], 5_000);
    assert.equal(split.status, 200);
    assert.equal(split.body.toString(), 'split answer');
  });

  it('reads chunked and close-delimited bodies (a proxy may answer so), and empty ones', async function () {
    const { client } = await start(async (socket, { head }) => {
      if (head.startsWith('GET /chunked')) {
        for (const piece of ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel', 'lo\r\n', '6;ext=1\r\n world\r\n0\r\n', 'x-trailer: 1\r\n\r\n']) {
          socket.write(piece);
          await turn();
        }
      } else if (head.startsWith('GET /until-close')) {
        socket.write('HTTP/1.1 200 OK\r\n\r\nall of ');
        await turn();
        socket.end('this');
      } else {
        socket.write('HTTP/1.1 204 No Content\r\n\r\n');
      }
    });
    assert.equal((await client.request(get('/chunked'), [], 5_000)).body.toString(), 'hello world');
    const empty = await client.request(get('/empty'), [], 5_000);
    assert.equal(empty.status, 204);
    assert.equal(empty.body.length, 0);
    assert.equal((await client.request(get('/until-close'), [], 5_000)).body.toString(), 'all of this');
  });

  it('keeps one connection for requests one after another, and opens another after the node closed it', async function () {
    const { client, stats } = await start((socket, { head, connection }) => {
      if (head.startsWith('GET /close')) return void socket.write(ok(`on ${connection}`, 'connection: close\r\n'), () => socket.end());
      if (head.startsWith('GET /drop')) return void socket.end(ok(`on ${connection}`));
      socket.write(ok(`on ${connection}`));
    });
    const bodies: string[] = [];
    for (const path of ['/a', '/b', '/close', '/c', '/drop']) bodies.push((await client.request(get(path), [], 5_000)).body.toString());
    // '/drop' answered without saying it would close: once it is closed, the next request opens another.
    while (stats().open) await turn();
    bodies.push((await client.request(get('/d'), [], 5_000)).body.toString());
    assert.deepEqual(bodies, ['on 1', 'on 1', 'on 1', 'on 2', 'on 2', 'on 3']);
    assert.equal(stats().connections, 3);
  });

  it('opens at most maxSockets connections; requests beyond them wait their turn', async function () {
    const { client, stats } = await start(async (socket, { head }) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      socket.write(ok(head.split(' ')[1]));
    }, 2);
    const paths = ['/1', '/2', '/3', '/4', '/5'];
    const answers = await Promise.all(paths.map((path) => client.request(get(path), [], 5_000)));
    assert.deepEqual(answers.map((a) => a.body.toString()), paths);
    assert.equal(stats().mostOpen, 2);
  });

  it('fails, never hangs or returns short, when the node stops midway, goes silent, or does not speak HTTP', async function () {
    const { client } = await start((socket, { head }) => {
      if (head.startsWith('GET /midway')) socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this');
      else if (head.startsWith('GET /garbage')) socket.write('SSH-2.0-OpenSSH\r\n\r\n');
      else if (head.startsWith('GET /long')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\ntwelve bytes');
      // '/silent': nothing.
    });
    await assert.rejects(client.request(get('/midway'), [], 5_000), /closed the connection after 9 bytes of its answer/);
    await assert.rejects(client.request(get('/garbage'), [], 5_000), /did not answer HTTP: "SSH-2.0-OpenSSH"/);
    await assert.rejects(client.request(get('/silent'), [], 200), /no answer from http:\/\/127\.0\.0\.1:\d+ within 200 ms/);
    await assert.rejects(client.request(get('/long'), [], 5_000), /longer than its Content-Length 2/);
    // The connection that broke is not reused: the next request still gets its answer.
    await assert.rejects(client.request(get('/midway'), [], 5_000), /after 9 bytes/);
  });

  it('fails a request to a port nothing listens on, with the system error', async function () {
    const { port, server } = await rawNode(() => {});
    await new Promise((resolve) => server.close(resolve));
    const client = new CallSockets('127.0.0.1', port, `http://127.0.0.1:${port}`, { maxSockets: 2, idleMs: 1_000 });
    clients.push(client);
    await assert.rejects(client.request(get('/'), [], 5_000), /ECONNREFUSED/);
  });
});
