/**
 * The client endpoints of a server, all behind one admission (`Gate`): the WebSocket upgrade,
 * Server-Sent Events and HTTP streaming, with the per-node broker channel over which other nodes
 * forward HTTP streaming POSTs for sessions held here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Broker, Publication } from '../engines/types.js';
import { safePath } from './logger.js';
import type { CompressionSettings } from './compression.js';
import type { Transport } from './transport.js';
import { HttpStreamEndpoint, type StreamLimits } from './transports/http-stream.js';
import { SseEndpoint, type StreamRequest } from './transports/sse.js';
import { WebSocketAcceptor } from './transports/websocket.js';
import { WebSocketUpgrade, type Admitted, type Gate } from './upgrade.js';

/** What the endpoints need from the server. */
export interface EndpointsHost {
  readonly closing: boolean;
  readonly logger: Logger;
  readonly broker: Pick<Broker, 'publish' | 'subscribe'>;
  readonly options: {
    readonly nodeId: string;
    readonly ssePath: string | undefined;
    readonly streamPath: string | undefined;
    readonly allowedOrigins: string[] | undefined;
    readonly compression: CompressionSettings | undefined;
    readonly limits: { readonly maxMessageBytes: number } & StreamLimits;
  };
  /** Make an admitted transport a connection. */
  accept(transport: Transport, admitted: Admitted): void;
  /** Make an admitted SSE stream a connection and subscribe its channels. */
  acceptStream(transport: Transport, admitted: Admitted, request: StreamRequest): void;
}

export class Endpoints {
  private readonly acceptor: WebSocketAcceptor;
  private readonly websocket: WebSocketUpgrade;
  private readonly sse: SseEndpoint;
  private readonly stream: HttpStreamEndpoint;
  /** Other nodes forward HTTP streaming messages for this node's sessions here (not a valid client channel name). */
  private readonly nodeChannel: string;

  constructor(
    gate: Gate,
    private readonly host: EndpointsHost,
  ) {
    const options = host.options;
    this.acceptor = new WebSocketAcceptor(options.limits.maxMessageBytes, options.compression);
    this.websocket = new WebSocketUpgrade(gate, this.acceptor, host, (transport, admitted) => host.accept(transport, admitted));
    this.sse = new SseEndpoint(gate, host, (transport, admitted, request) => host.acceptStream(transport, admitted, request));
    this.nodeChannel = nodeChannelOf(options.nodeId);
    this.stream = new HttpStreamEndpoint(
      gate,
      {
        get closing() {
          return host.closing;
        },
        logger: host.logger,
        nodeId: options.nodeId,
        allowedOrigins: options.allowedOrigins,
        maxMessageBytes: options.limits.maxMessageBytes,
        limits: options.limits,
      },
      (transport, admitted) => host.accept(transport, admitted),
      async (node, session, seq, body) => {
        await host.broker.publish(nodeChannelOf(node), { session, seq, body }, { ephemeral: true });
      },
    );
  }

  /** Subscribe the node channel (once the engine has started). */
  async start(): Promise<void> {
    if (this.host.options.streamPath !== undefined) await this.host.broker.subscribe(this.nodeChannel);
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.websocket.handle(req, socket, head);
  }

  /** Answer the SSE and HTTP streaming endpoints; false for any other path. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const path = safePath(req.url);
    const { ssePath, streamPath } = this.host.options;
    if (ssePath !== undefined && path === ssePath) {
      this.sse.handle(req, res);
      return true;
    }
    if (streamPath !== undefined && (path === streamPath || path.startsWith(`${streamPath}/`))) {
      this.stream.handle(req, res, path.slice(streamPath.length));
      return true;
    }
    return false;
  }

  /** Take a publication on this node's channel (a forwarded stream message); false for any other. */
  nodeMessage(publication: Publication): boolean {
    if (publication.channel !== this.nodeChannel) return false;
    const { session, seq, body } = (publication.data ?? {}) as { session?: unknown; seq?: unknown; body?: unknown };
    if (typeof session === 'string' && typeof seq === 'number' && typeof body === 'string') this.stream.deliver(session, seq, body);
    return true;
  }

  close(): Promise<void> {
    return this.acceptor.close();
  }
}

function nodeChannelOf(nodeId: string): string {
  return `node ${nodeId}`;
}
