import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { systemClock, type Clock } from '../engines/clock.js';
import type { DocumentStore, DocumentVersion, StoredDocument, StoreOptions } from './store.js';

/**
 * Documents in a SQLite file (WAL mode), for one node. The lease is always granted: two
 * processes must not serve documents from the same file (use Redis for a cluster).
 */
export class SqliteDocumentStore implements DocumentStore {
  readonly name = 'sqlite';
  private readonly db: Database.Database;
  private readonly statements;

  /**
   * @param file path of the database file; its directory is created if missing
   * @param now the clock stamping each stored state's `updated` column, injectable for tests
   */
  constructor(
    file: string,
    private readonly now: Clock = systemClock,
  ) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS documents (
        name TEXT PRIMARY KEY, state BLOB NOT NULL, position_offset INTEGER, position_epoch TEXT, updated INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, time INTEGER NOT NULL, state BLOB NOT NULL
      );
      CREATE INDEX IF NOT EXISTS versions_by_name ON versions (name, id);
    `);
    this.statements = {
      load: this.db.prepare<[string], { state: Buffer; position_offset: number | null; position_epoch: string | null }>(
        'SELECT state, position_offset, position_epoch FROM documents WHERE name = ?',
      ),
      store: this.db.prepare(
        `INSERT INTO documents (name, state, position_offset, position_epoch, updated) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET state = excluded.state, position_offset = excluded.position_offset,
           position_epoch = excluded.position_epoch, updated = excluded.updated`,
      ),
      addVersion: this.db.prepare('INSERT INTO versions (name, time, state) VALUES (?, ?, ?)'),
      prune: this.db.prepare(
        'DELETE FROM versions WHERE name = ? AND id NOT IN (SELECT id FROM versions WHERE name = ? ORDER BY id DESC LIMIT ?)',
      ),
      versions: this.db.prepare<[string], { id: number; time: number; bytes: number }>(
        'SELECT id, time, length(state) AS bytes FROM versions WHERE name = ? ORDER BY id DESC',
      ),
      version: this.db.prepare<[string, number], { state: Buffer }>('SELECT state FROM versions WHERE name = ? AND id = ?'),
    };
  }

  async load(name: string): Promise<StoredDocument | undefined> {
    const row = this.statements.load.get(name);
    if (!row) return undefined;
    return {
      update: new Uint8Array(row.state),
      ...(row.position_offset !== null && row.position_epoch !== null
        ? { position: { offset: row.position_offset, epoch: row.position_epoch } }
        : {}),
    };
  }

  async store(name: string, update: Uint8Array, options: StoreOptions = {}): Promise<boolean> {
    const position = options.position;
    this.statements.store.run(name, Buffer.from(update), position?.offset ?? null, position?.epoch ?? null, this.now());
    return true;
  }

  async addVersion(name: string, update: Uint8Array, time: number, keep: number): Promise<DocumentVersion> {
    const add = this.db.transaction(() => {
      const id = this.statements.addVersion.run(name, time, Buffer.from(update)).lastInsertRowid;
      this.statements.prune.run(name, name, keep);
      return String(id);
    });
    return { id: add(), time, bytes: update.length };
  }

  async versions(name: string): Promise<DocumentVersion[]> {
    return this.statements.versions.all(name).map((row) => ({ id: String(row.id), time: row.time, bytes: row.bytes }));
  }

  async version(name: string, id: string): Promise<Uint8Array | undefined> {
    const n = Number(id);
    if (!Number.isSafeInteger(n)) return undefined;
    const row = this.statements.version.get(name, n);
    return row ? new Uint8Array(row.state) : undefined;
  }

  async acquireLease(): Promise<boolean> {
    return true;
  }

  async releaseLease(): Promise<void> {}

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
