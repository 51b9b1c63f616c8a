import FleetCore
import FleetInventory
import FleetSSH
import Foundation

/// Keeps one connection per host open from one use to the next, for a controller that comes back to
/// the same hosts on an interval (`supervise`): a pass then costs each host one remote command, not
/// a TCP and SSH handshake and a login as well.
///
/// What ``connect(_:)`` returns is a lease: its `close()` leaves the connection open for the next
/// pass. A connection that fails in any operation is closed and forgotten, so the next use makes a
/// new one. A connection that was kept may have died while it waited (the host rebooted, a NAT
/// forgot it): when the first operation of a lease on a kept connection fails, the lease connects
/// again and retries that operation once, so a reboot between passes is not reported as a host that
/// cannot be reached. Only the first operation is retried: later ones may have had effects. One that
/// ran out its time is not retried either. Connections idle for longer than ``maxIdle`` are not
/// reused.
///
/// A kept connection to a host cut off the network does not fail at once: the command waits until
/// the kernel gives up on it (three keepalives, 45 s). So the first operation on a kept connection
/// gets ``firstAnswer`` to answer (10 s, the default SSH connect timeout; the status probe ends within
/// about 9 s), and is then taken as lost,
/// retried on a new connection, whose connect timeout says whether the host can be reached, as it
/// would without the pool.
public actor ConnectionPool: HostConnector {
  private struct Kept {
    var host: any RemoteHost
    var id: Int
    var lastUsed: Date
  }

  private let connector: any HostConnector
  private var kept: [String: Kept] = [:]
  private var connections = 0
  /// How long a connection may wait unused and still be reused (a firewall or NAT on the way may
  /// forget an idle connection without telling either end).
  public let maxIdle: TimeInterval
  /// How long the first operation on a kept connection may take before the connection is taken as
  /// lost.
  public let firstAnswer: Duration

  /// A pool over `connector`.
  public init(
    _ connector: any HostConnector, maxIdle: TimeInterval = 300, firstAnswer: Duration = .seconds(10)
  ) {
    self.connector = connector
    self.maxIdle = maxIdle
    self.firstAnswer = firstAnswer
  }

  /// Connections made so far (kept ones reused do not count).
  public var connectionsMade: Int { connections }

  public func connect(_ ref: HostRef) async throws -> any RemoteHost {
    if let entry = kept[ref.name] {
      if Date().timeIntervalSince(entry.lastUsed) <= maxIdle {
        return Lease(pool: self, ref: ref, kept: (entry.host, entry.id), reused: true)
      }
      kept[ref.name] = nil
      await entry.host.close()
    }
    return Lease(pool: self, ref: ref, kept: try await fresh(ref), reused: false)
  }

  /// Closes every kept connection.
  public func closeAll() async {
    let all = kept.values.map(\.host)
    kept = [:]
    for host in all { await host.close() }
  }

  /// A new connection to `ref`, kept in place of any other; with the id that tells it apart.
  fileprivate func fresh(_ ref: HostRef) async throws -> (host: any RemoteHost, id: Int) {
    let host = try await connector.connect(ref)
    connections += 1
    if let old = kept.updateValue(Kept(host: host, id: connections, lastUsed: Date()), forKey: ref.name) {
      await old.host.close()
    }
    return (host, connections)
  }

  fileprivate func used(_ ref: HostRef) {
    kept[ref.name]?.lastUsed = Date()
  }

  /// Forgets and closes connection `id` to `ref` after a failure (unless another one replaced it).
  fileprivate func failed(_ ref: HostRef, id: Int, _ host: any RemoteHost) async {
    if kept[ref.name]?.id == id { kept[ref.name] = nil }
    await host.close()
  }
}

/// One use of a pooled connection (see ``ConnectionPool``).
private actor Lease: RemoteHost {
  let pool: ConnectionPool
  let ref: HostRef
  var host: any RemoteHost
  var id: Int
  /// Whether the connection was kept from an earlier use and no operation has succeeded on it yet.
  var untried: Bool

  init(pool: ConnectionPool, ref: HostRef, kept: (host: any RemoteHost, id: Int), reused: Bool) {
    self.pool = pool
    self.ref = ref
    (host, id) = kept
    untried = reused
  }

  private func using<T: Sendable>(_ operation: @escaping @Sendable (any RemoteHost) async throws -> T)
    async throws -> T
  {
    do {
      let result =
        untried ? try await Self.within(pool.firstAnswer, operation, on: host) : try await operation(host)
      untried = false
      await pool.used(ref)
      return result
    } catch {
      await pool.failed(ref, id: id, host)
      let retry = untried && !Task.isCancelled && (error as? FleetError)?.code != .sshTimeout
      untried = false
      guard retry else { throw error }
      (host, id) = try await pool.fresh(ref)
      do {
        let result = try await operation(host)
        await pool.used(ref)
        return result
      } catch {
        await pool.failed(ref, id: id, host)
        throw error
      }
    }
  }

  /// `operation` on `host`, or a lost connection when it has not answered within `limit` (it is
  /// cancelled then).
  private static func within<T: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable (any RemoteHost) async throws -> T,
    on host: any RemoteHost
  ) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask { try await operation(host) }
      group.addTask {
        try await Task.sleep(for: limit)
        return nil
      }
      defer { group.cancelAll() }
      guard let first = try await group.next(), let value = first else {
        throw FleetError(
          .sshConnectionLost, "a kept connection did not answer within \(limit.components.seconds) s")
      }
      return value
    }
  }

  func run(_ command: String) async throws -> CommandOutput {
    try await using { try await $0.run(command) }
  }

  func write(_ bytes: [UInt8], to path: String, mode: Int) async throws {
    try await using { try await $0.write(bytes, to: path, mode: mode) }
  }

  func upload(localPath: String, to path: String, mode: Int) async throws {
    try await using { try await $0.upload(localPath: localPath, to: path, mode: mode) }
  }

  func read(_ path: String) async throws -> [UInt8]? {
    try await using { try await $0.read(path) }
  }

  /// Leaves the connection open for the next use.
  func close() async {}
}
