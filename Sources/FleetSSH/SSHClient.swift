import FleetCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Opens SSH connections; owns the threads all libssh2 work runs on.
///
/// libssh2 blocks (it polls its socket), so none of its calls may run on Swift's cooperative pool.
/// Every connection's work runs on a thread of this client's `NIOThreadPool`; size it for the fan-out
/// (one thread per host that is worked on at once). Call ``shutdown()`` when done, or hold the client
/// with ``withClient(threads:logger:_:)``: a client released without it leaks its threads, which debug
/// builds report by an assertion (like `NIOThreadPool` itself).
public final class SSHClient: Sendable {
  let pool: NIOThreadPool
  let logger: Logger
  private let isShutDown = Atomic(false)

  /// Starts a client with `threads` worker threads (at least as many as hosts driven at once).
  public init(threads: Int = 64, logger: Logger = Logger(label: "fleetsync.ssh")) {
    pool = NIOThreadPool(numberOfThreads: max(1, threads))
    pool.start()
    self.logger = logger
  }

  /// Runs `body` with a new client of `threads` threads and shuts the client down afterwards, also
  /// when `body` throws: the one way commands hold a client.
  public static func withClient<T>(
    threads: Int, logger: Logger = Logger(label: "fleetsync.ssh"), _ body: (SSHClient) async throws -> T
  ) async rethrows -> T {
    let client = SSHClient(threads: threads, logger: logger)
    do {
      let result = try await body(client)
      await client.shutdown()
      return result
    } catch {
      await client.shutdown()
      throw error
    }
  }

  /// Connects, verifies the host key and logs in, within `options.connectTimeout`.
  ///
  /// - Throws: ``FleetError`` with an `ssh.*` code naming the host and what to do.
  public func connect(_ endpoint: SSHEndpoint, options: SSHOptions) async throws -> SSHConnection {
    let control = OperationControl()
    let logger = self.logger
    return try await withTaskCancellationHandler {
      try await run {
        let session = try Session.connect(to: endpoint, options: options, control: control, logger: logger)
        return SSHConnection(session: session, options: options, client: self)
      }
    } onCancel: {
      control.cancel()
    }
  }

  /// Connects, runs `body`, and closes the connection whatever happens.
  public func withConnection<T: Sendable>(
    _ endpoint: SSHEndpoint, options: SSHOptions, _ body: (SSHConnection) async throws -> T
  ) async throws -> T {
    let connection = try await connect(endpoint, options: options)
    do {
      let result = try await body(connection)
      await connection.close()
      return result
    } catch {
      await connection.close()
      throw error
    }
  }

  /// Connects to every endpoint (at most `window` at once) and runs `body` on each connection.
  ///
  /// Results come back in the order of `endpoints`; a failing or hanging host never stops the others
  /// (each is bounded by its own deadlines).
  public func fanOut<T: Sendable>(
    _ endpoints: [SSHEndpoint], options: SSHOptions, window: Int = 32,
    _ body: @escaping @Sendable (SSHConnection) async throws -> T
  ) async -> [(endpoint: SSHEndpoint, result: Result<T, FleetError>)] {
    await FleetSSH.fanOut(endpoints, window: window) { endpoint in
      try await self.withConnection(endpoint, options: options, body)
    }
  }

  /// Stops the worker threads once running work finished.
  public func shutdown() async {
    isShutDown.store(true, ordering: .releasing)
    try? await pool.shutdownGracefully()
  }

  deinit {
    assert(isShutDown.load(ordering: .acquiring), "SSHClient released without shutdown(): its threads leak")
  }

  /// Runs blocking work on a pool thread.
  ///
  /// A pool that was shut down refuses work with a `CancellationError`; unless this task was cancelled,
  /// that is a bug of the caller (``FleetError/Code/internal``), not a cancellation.
  func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    do {
      return try await pool.runIfActive(body)
    } catch let error as FleetError {
      throw error
    } catch is CancellationError where !Task.isCancelled {
      throw FleetError(.internal, "the SSH thread pool is not running (client shut down?)")
    } catch {
      throw FleetError.wrap(error, code: .internal, "the SSH thread pool is not running (client shut down?)")
    }
  }
}

/// Runs `body` for every endpoint, at most `window` at once, and collects a `Result` per endpoint.
///
/// Results are in the order of `endpoints`. Errors that are not ``FleetError`` are wrapped. One host's
/// failure or slowness never cancels the others; cancelling the calling task cancels all.
public func fanOut<T: Sendable>(
  _ endpoints: [SSHEndpoint], window: Int = 32,
  _ body: @escaping @Sendable (SSHEndpoint) async throws -> T
) async -> [(endpoint: SSHEndpoint, result: Result<T, FleetError>)] {
  var results = [Result<T, FleetError>?](repeating: nil, count: endpoints.count)
  await withTaskGroup(of: (Int, Result<T, FleetError>).self) { group in
    var next = 0
    func addNext() {
      let index = next
      let endpoint = endpoints[index]
      next += 1
      group.addTask {
        do {
          return (index, .success(try await body(endpoint)))
        } catch {
          return (index, .failure(FleetError.wrap(error, code: .internal, "\(endpoint): \(error)")))
        }
      }
    }
    while next < endpoints.count && next < max(1, window) { addNext() }
    for await (index, result) in group {
      results[index] = result
      if next < endpoints.count { addNext() }
    }
  }
  return zip(endpoints, results).map { ($0, $1!) }
}

/// One logged-in SSH connection. Operations on it run one at a time, each on a pool thread.
///
/// Every operation has a deadline (its `timeout`, else ``SSHOptions/operationTimeout``) and reacts to
/// task cancellation at once: a cancelled or timed-out `exec` kills the remote command's process group.
public final class SSHConnection: Sendable {
  /// Where this connection is logged in.
  public let endpoint: SSHEndpoint
  let options: SSHOptions
  let client: SSHClient
  /// The libssh2 session; the mutex makes sure one thread at a time uses it. Nil once closed.
  private let session: Mutex<SessionBox>

  init(session: sending Session, options: SSHOptions, client: SSHClient) {
    self.endpoint = session.endpoint
    self.options = options
    self.client = client
    self.session = Mutex(SessionBox(session))
  }

  /// Runs `command` through the remote user's shell and returns its output and exit status.
  ///
  /// `stdin` is sent and then closed (no input: closed at once, like `ssh -n`). Both output streams are
  /// collected in full. A non-zero exit status is a result, not an error.
  ///
  /// - Throws: ``FleetError``: `ssh.timeout` past the deadline, `ssh.connectionLost` when the connection
  ///   dropped before an exit status arrived, `cancelled` when the task was cancelled (the remote command
  ///   is killed in both of the first and last cases while the connection works).
  public func exec(_ command: String, stdin: [UInt8]? = nil, timeout: Duration? = nil) async throws
    -> ExecResult
  {
    try await operation(timeout) { session, control, deadline in
      try session.exec(command, stdin: stdin, control: control, deadline: deadline)
    }
  }

  /// Uploads `bytes` to `path` atomically over SFTP (temp file, fsync, rename), with `mode` and optional
  /// `owner`/`group` (names or numbers; changing them needs root on the host).
  ///
  /// The content never appears in argv, logs or errors. On failure the target is untouched; the temp
  /// file (`.NAME.fleetsync-tmp.XXXX` beside it) is removed if the connection still works.
  public func upload(
    _ bytes: [UInt8], to path: String, mode: Int = 0o644, owner: String? = nil, group: String? = nil,
    timeout: Duration? = nil
  ) async throws {
    try await operation(timeout) { session, control, deadline in
      try session.upload(
        .bytes(bytes), to: path, mode: mode, owner: owner, group: group, control: control, deadline: deadline)
    }
  }

  /// Uploads the local file at `localPath` like ``upload(_:to:mode:owner:group:timeout:)``, streaming it.
  public func uploadFile(
    localPath: String, to path: String, mode: Int = 0o644, owner: String? = nil, group: String? = nil,
    timeout: Duration? = nil
  ) async throws {
    try await operation(timeout) { session, control, deadline in
      try session.upload(
        .file(path: localPath), to: path, mode: mode, owner: owner, group: group, control: control,
        deadline: deadline)
    }
  }

  /// Reads a whole remote file over SFTP (meant for small files); nil if it does not exist.
  public func readFile(_ path: String, timeout: Duration? = nil) async throws -> [UInt8]? {
    try await operation(timeout) { session, control, deadline in
      try session.readFile(path, control: control, deadline: deadline)
    }
  }

  /// Disconnects and frees the session; later operations fail. Safe to call more than once.
  public func close() async {
    _ = try? await client.run {
      self.session.withLock { box in
        box.session?.disconnect()
        box.session = nil
      }
    }
  }

  /// Runs one operation on a pool thread with the session locked, a deadline and cancellation.
  private func operation<T: Sendable>(
    _ timeout: Duration?, _ body: @escaping @Sendable (Session, OperationControl, Deadline) throws -> T
  ) async throws -> T {
    let control = OperationControl()
    let limit = timeout ?? options.operationTimeout
    let endpoint = self.endpoint
    return try await withTaskCancellationHandler {
      try await client.run {
        try self.session.withLock { box in
          guard let session = box.session else {
            throw FleetError(.sshConnectionLost, "the connection to \(endpoint) is closed; connect again")
          }
          if control.isCancelled { throw FleetError(.cancelled, "operation on \(endpoint) was cancelled") }
          return try body(session, control, Deadline(after: limit))
        }
      }
    } onCancel: {
      control.cancel()
    }
  }
}

/// Holds the non-Sendable session inside the connection's mutex.
struct SessionBox: ~Copyable {
  var session: Session?
  init(_ session: Session) { self.session = session }
}
