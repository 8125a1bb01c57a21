import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Counter, Gauge } from 'prom-client';
import * as Y from 'yjs';
import { ChorusError, ErrorCode, type StreamPosition } from '../protocol/index.js';
import type { BrokerEvent } from '../engines/types.js';
import type { Identity } from '../server/options.js';
import type { ChorusServer } from '../server/server.js';
import { serverHost, type DocumentsHost } from './host.js';
import { LiveDocument, Origin, type DocumentContext } from './live-document.js';
import { resolveDocumentsOptions, type DocumentAccess, type DocumentsOptions, type ResolvedDocumentsOptions } from './options.js';
import { MemoryDocumentStore, type DocumentStore } from './store.js';
import { YjsEndpoint } from './yjs-endpoint.js';
import { documentsApi } from './api.js';
import { DocumentFrames } from './chorus-frames.js';

/**
 * Shared Yjs documents on a Chorus server: the y-websocket endpoint (`/yjs/<name>`), loading
 * and storing through a `DocumentStore`, fan-out between nodes through the engine, the versions
 * API. Create it once per server: `new ChorusDocuments(server, { store })`; it closes with the server.
 */
export class ChorusDocuments {
  readonly options: ResolvedDocumentsOptions;
  readonly store: DocumentStore;
  readonly host: DocumentsHost;
  /**
   * This process's identity in document messages and leases: the node id plus a random part, so
   * a node restarted under the same id still applies the updates its previous process published.
   */
  readonly instanceId: string;
  /** Documents open on this node. */
  readonly documents = new Map<string, LiveDocument>();
  /** The y-websocket endpoint (`/yjs/`) and its connections on this node. */
  readonly endpoint: YjsEndpoint;
  private readonly context: DocumentContext;
  private readonly metrics;
  private readonly ticker: NodeJS.Timeout;
  private lastLeaseRenewal = 0;
  private closed = false;

  constructor(server: ChorusServer | DocumentsHost, options: DocumentsOptions = {}) {
    this.host = 'rules' in server ? serverHost(server) : server;
    this.options = resolveDocumentsOptions(options);
    this.instanceId = `${this.host.nodeId}/${Math.random().toString(36).slice(2, 10)}`;
    this.store = options.store ?? new MemoryDocumentStore(() => this.host.now());
    const registers = [this.host.metricsRegistry];
    this.metrics = {
      open: new Gauge({ name: 'chorus_documents_open', help: 'Documents loaded on this node', registers }),
      updates: new Counter({ name: 'chorus_document_updates_total', help: 'Document updates applied, by source', labelNames: ['source'], registers }),
      stores: new Counter({ name: 'chorus_document_stores_total', help: 'Document stores, by result', labelNames: ['result'], registers }),
    };
    this.context = {
      nodeId: this.instanceId,
      broker: this.host.broker,
      store: this.store,
      options: this.options,
      logger: this.host.logger,
      now: () => this.host.now(),
      counted: (kind) => this.metrics.updates.inc({ source: kind }),
    };
    this.endpoint = new YjsEndpoint({
      host: this.host,
      options: this.options,
      connectionsGauge: new Gauge({ name: 'chorus_document_connections', help: 'Open /yjs/ connections', registers }),
      isDocument: (name) => this.isDocument(name),
      access: (name, identity, client) => this.access(name, identity, client),
      acquire: (name) => this.acquire(name),
      release: (document) => this.release(document),
      isClosed: () => this.closed,
    });
    this.host.addUpgradeRoute(`${this.options.path}/`, (req, socket, head) => this.endpoint.handleUpgrade(req, socket, head));
    this.host.addApiRoute(documentsApi(this));
    this.host.addBrokerTap((event) => this.onBrokerEvent(event));
    this.host.onClose(() => this.close());
    new DocumentFrames(this.host, {
      limits: this.options.limits,
      isDocument: (name) => this.isDocument(name),
      access: (name, identity, client) => this.access(name, identity, client),
      acquire: (name) => this.acquire(name),
      release: (document) => this.release(document),
    });
    const tickMs = Math.max(10, Math.min(250, Math.floor(this.options.storeDebounceMs / 4)));
    this.ticker = setInterval(() => this.tick(), tickMs);
    this.ticker.unref();
  }

  /**
   * Handle an upgrade for `<path>/<document name>` yourself (noServer embedding); with
   * `chorus.attach(server)` such upgrades are routed here already.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.endpoint.handleUpgrade(req, socket, head);
  }

  /** Whether a name is in a document namespace. */
  isDocument(name: string): boolean {
    try {
      return this.host.namespace(name).document;
    } catch {
      return false;
    }
  }

  /**
   * What a user may do with a document: the namespace rules, then the server's `authorize`
   * (`subscribe` to read, `publish` to write), then the `access` option.
   */
  async access(name: string, identity: Pick<Identity, 'user' | 'info'>, client: string): Promise<DocumentAccess> {
    const namespace = this.host.namespace(name);
    if (!namespace.document || namespace.subscribe === 'none') return 'deny';
    if (namespace.personal && this.host.ownerOf(name) !== identity.user) return 'deny';
    let access: DocumentAccess = namespace.publish === 'none' ? 'read' : 'write';
    const authorize = this.host.authorize;
    const request = { channel: name, user: identity.user, info: identity.info, client };
    try {
      if (authorize && !(await authorize({ action: 'subscribe', ...request }))) return 'deny';
      if (authorize && access === 'write' && !(await authorize({ action: 'publish', ...request }))) access = 'read';
      if (this.options.access) access = await this.options.access({ document: name, user: identity.user, info: identity.info, access });
    } catch (err) {
      this.host.logger.info({ document: name, user: identity.user, err: { message: (err as Error).message } }, 'document access hook denied');
      return 'deny';
    }
    return access === 'write' || access === 'read' ? access : 'deny';
  }

  /** Open a document on this node (loading it if needed) and hold it until `release`. */
  async acquire(name: string): Promise<LiveDocument> {
    for (;;) {
      if (this.closed) throw new ChorusError(ErrorCode.SHUTTING_DOWN, 'server is shutting down');
      const existing = this.documents.get(name);
      if (existing?.state === 'live') {
        existing.holds++;
        return existing;
      }
      if (existing?.state === 'loading') {
        await existing.ready;
        continue;
      }
      if (existing?.state === 'unloading') {
        await existing.unloaded;
        continue;
      }
      const document = new LiveDocument(name, this.host.namespace(name), this.context);
      this.documents.set(name, document);
      document.ready = this.load(document).then(
        () => {
          document.state = 'live';
          this.metrics.open.inc();
        },
        async (err: unknown) => {
          this.documents.delete(name);
          await this.host.broker.unsubscribe(name).catch(() => undefined);
          document.destroy();
          throw err;
        },
      );
      await document.ready;
    }
  }

  /** Stop holding a document; the last release stores it (if this node holds the lease) and unloads it. */
  release(document: LiveDocument): void {
    document.holds--;
    if (document.holds > 0 || document.state !== 'live') return;
    document.unloaded = this.unload(document).catch((err: unknown) => {
      this.host.logger.error({ err: { message: (err as Error).message }, document: document.name }, 'unloading a document failed');
    });
  }

  private async load(document: LiveDocument): Promise<void> {
    const name = document.name;
    await this.host.broker.subscribe(name, { recoverable: document.namespace.historySize > 0 });
    const stored = await this.store.load(name);
    if (stored) {
      Y.applyUpdate(document.doc, stored.update, Origin.LOAD);
      document.bytes = stored.update.length;
      if (stored.position) document.position = stored.position;
    }
    await this.catchUp(document, stored?.position);
    document.lastVersionAt = (await this.store.versions(name))[0]?.time ?? 0;
    document.holder = await this.store.acquireLease(name, this.instanceId, this.options.leaseTtlMs);
    if (this.options.onLoad) {
      const empty = !stored && document.doc.store.clients.size === 0;
      await this.options.onLoad({ document: name, doc: document.doc, empty, holder: document.holder });
    }
    document.requestState();
    this.host.logger.debug({ document: name, bytes: document.bytes, holder: document.holder }, 'document loaded');
  }

  /**
   * Apply the channel's history after `since` (the stored snapshot's position). When history
   * cannot cover the gap (another epoch, or trimmed), everything retained is applied and other
   * nodes are asked for their state: Yjs updates are idempotent, so repeats do no harm.
   */
  private async catchUp(document: LiveDocument, since: StreamPosition | undefined): Promise<void> {
    const limit = Math.max(1, Math.min(1000, document.namespace.historySize));
    let after = since;
    for (let pages = 0; pages < 10000; pages++) {
      let read;
      try {
        read = await this.host.history.read(document.name, { limit, ...(after ? { since: after } : {}) });
      } catch (err) {
        if (!(err instanceof ChorusError) || err.code !== ErrorCode.UNRECOVERABLE_POSITION || !after) throw err;
        this.host.logger.warn({ document: document.name }, 'document history is from another epoch; reading all of it and asking other nodes');
        after = undefined;
        continue;
      }
      if (after && read.firstOffset > after.offset + 1) {
        this.host.logger.warn({ document: document.name, since: after.offset, firstOffset: read.firstOffset }, 'document history was trimmed past the stored snapshot; asking other nodes');
      }
      for (const publication of read.publications) document.onPublication(publication);
      if (!document.position || document.position.epoch !== read.position.epoch || document.position.offset < read.position.offset) {
        if (read.publications.length < limit) document.position = read.position;
      }
      const last = read.publications[read.publications.length - 1];
      if (read.publications.length < limit || last?.offset === undefined) return;
      after = { offset: last.offset, epoch: read.position.epoch };
    }
  }

  private async unload(document: LiveDocument): Promise<void> {
    if (document.holder && document.dirtySince !== undefined) await this.storeDocument(document);
    if (document.holds > 0) return;
    document.state = 'unloading';
    this.metrics.open.dec();
    try {
      await this.host.broker.unsubscribe(document.name).catch(() => undefined);
      if (document.holder) await this.store.releaseLease(document.name, this.instanceId).catch(() => undefined);
    } finally {
      this.documents.delete(document.name);
      document.destroy();
      this.host.logger.debug({ document: document.name }, 'document unloaded');
    }
  }

  private async storeDocument(document: LiveDocument): Promise<void> {
    try {
      await document.storeNow();
      this.metrics.stores.inc({ result: document.holder ? 'ok' : 'lost_lease' });
    } catch (err) {
      this.metrics.stores.inc({ result: 'failed' });
      this.host.logger.warn({ err: { message: (err as Error).message }, document: document.name }, 'storing a document failed; retrying');
    }
  }

  private onBrokerEvent(event: BrokerEvent): boolean {
    if (event.type === 'control') return false;
    const channel = event.type === 'publication' ? event.publication.channel : event.channel;
    const document = this.documents.get(channel);
    if (!document) return this.isDocument(channel);
    if (event.type === 'publication') document.onPublication(event.publication);
    else if (event.type === 'lost') {
      this.catchUp(document, document.position)
        .then(() => document.requestState())
        .catch((err: unknown) => this.host.logger.warn({ err: { message: (err as Error).message }, document: channel }, 'document catch-up failed'));
    }
    return true;
  }

  /** One timer for every document and connection: stores, leases, awareness expiry; the endpoint's heartbeats and token expiry. */
  tick(now = this.host.now()): void {
    const renewLeases = now - this.lastLeaseRenewal >= this.options.leaseTtlMs / 3;
    if (renewLeases) this.lastLeaseRenewal = now;
    for (const document of this.documents.values()) {
      if (document.state !== 'live') continue;
      const expired = document.awareness.expire(now, this.options.awarenessTimeoutMs);
      if (expired) document.broadcastAwareness(expired, true);
      document.retryPublish();
      if (renewLeases) {
        this.store.acquireLease(document.name, this.instanceId, this.options.leaseTtlMs).then(
          (holder) => {
            if (holder && !document.holder) this.host.logger.info({ document: document.name }, 'took the document lease: this node stores it now');
            document.holder = holder;
          },
          (err: unknown) => {
            document.holder = false;
            this.host.logger.warn({ err: { message: (err as Error).message }, document: document.name }, 'document lease renewal failed');
          },
        );
      }
      if (document.storeDue(now)) void this.storeDocument(document);
    }
    this.endpoint.tick(now);
  }

  /** Close every `/yjs/` connection (1001), store every document this node holds, release leases. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    await this.endpoint.closeAll();
    await Promise.all([...this.documents.values()].map((d) => d.ready.catch(() => undefined)));
    await Promise.all([...this.documents.values()].map((d) => d.unloaded));
    for (const document of [...this.documents.values()]) {
      document.holds = 0;
      if (document.state === 'live') await this.unload(document).catch(() => undefined);
    }
    await this.store.close();
  }
}
