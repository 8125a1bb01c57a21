/**
 * One HTTP POST of a JSON body over keep-alive agents, with a hard timeout and a bound on the
 * answer's size. Shared by proxy calls and webhook deliveries.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { MAX_ANSWER_BYTES } from './options.js';

export interface PostResult {
  status: number;
  body: string;
  contentType: string | undefined;
}

/** Why a POST failed before an answer arrived; `reason` is safe to log (no URL credentials, no bodies). */
export class PostError extends Error {
  override name = 'PostError';
  constructor(
    readonly reason: 'timeout' | 'connection' | 'too_large',
    message: string,
  ) {
    super(message);
  }
}

/** Keep-alive agents for http: and https:, sized to the caller's concurrency. */
export class Agents {
  readonly http: HttpAgent;
  readonly https: HttpsAgent;
  constructor(maxSockets: number) {
    this.http = new HttpAgent({ keepAlive: true, maxSockets, maxFreeSockets: Math.min(maxSockets, 16) });
    this.https = new HttpsAgent({ keepAlive: true, maxSockets, maxFreeSockets: Math.min(maxSockets, 16) });
  }
  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

export function post(url: URL, body: string, headers: Record<string, string>, timeoutMs: number, agents: Agents): Promise<PostResult> {
  return new Promise((resolve, reject) => {
    const https = url.protocol === 'https:';
    const send = https ? httpsRequest : httpRequest;
    let settled = false;
    const done = (err: Error | undefined, result?: PostResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(result!);
    };
    const req = send(
      url,
      {
        method: 'POST',
        agent: https ? agents.https : agents.http,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > MAX_ANSWER_BYTES) {
            done(new PostError('too_large', `answer larger than ${MAX_ANSWER_BYTES} bytes`));
            req.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () =>
          done(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), contentType: res.headers['content-type'] }),
        );
        res.on('error', (err) => done(new PostError('connection', `answer interrupted (${(err as NodeJS.ErrnoException).code ?? err.message})`)));
      },
    );
    const timer = setTimeout(() => {
      done(new PostError('timeout', `no answer within ${timeoutMs} ms`));
      req.destroy();
    }, timeoutMs);
    timer.unref();
    req.on('error', (err: NodeJS.ErrnoException) => done(new PostError('connection', `request failed (${err.code ?? err.message})`)));
    req.end(body);
  });
}
