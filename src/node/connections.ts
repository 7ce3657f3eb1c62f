import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * The web server's connections, and which of them carry a request now. A stopping node
 * closes those that carry none: `server.close()` waits for every connection, and Node closes
 * the idle ones only once they have served a request, so a connection a client opened and
 * left unused (undici keeps a spare one after an aborted fetch) held a stopping node for its
 * whole stop step.
 */
export class Connections {
  private readonly requests = new Map<Socket, number>();

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.requests.set(socket, 0);
      socket.once('close', () => this.requests.delete(socket));
    });
    server.on('request', (req, res) => {
      const socket = req.socket;
      this.requests.set(socket, (this.requests.get(socket) ?? 0) + 1);
      res.once('close', () => {
        if (this.requests.has(socket)) this.requests.set(socket, this.requests.get(socket)! - 1);
      });
    });
  }

  /** Ends every connection that carries no request now. */
  closeUnused(): void {
    for (const [socket, count] of this.requests) if (count === 0) socket.destroy();
  }
}
