import FleetCore
import FleetInventory
import FleetSSH
import Foundation
import Synchronization
import Testing

@testable import FleetProvision

/// `supervise`'s connections: one per host, kept from pass to pass; a kept one that died is replaced
/// and its first command retried once; nothing after the first is retried.
@Suite struct ConnectionPoolTests {
  /// A connection that answers `echo` until it is cut.
  final class Connection: RemoteHost {
    let cut = Mutex(false)
    /// Cut off the network: a command waits for an answer that never comes.
    let silent = Mutex(false)
    let commands = Mutex(0)
    let closed = Mutex(false)
    func run(_ command: String) async throws -> CommandOutput {
      if cut.withLock({ $0 }) { throw FleetError(.sshConnectionLost, "connection lost (fake)") }
      if silent.withLock({ $0 }) { try await Task.sleep(for: .seconds(3_600)) }
      commands.withLock { $0 += 1 }
      return CommandOutput(status: 0, stdout: command, stderr: "")
    }
    func write(_ bytes: [UInt8], to path: String, mode: Int) async throws { _ = try await run("write") }
    func upload(localPath: String, to path: String, mode: Int) async throws { _ = try await run("upload") }
    func read(_ path: String) async throws -> [UInt8]? { _ = try await run("read"); return nil }
    func close() async { closed.withLock { $0 = true } }
  }

  /// Makes a new connection at each connect, and remembers them.
  final class Connector: HostConnector {
    let made = Mutex<[Connection]>([])
    func connect(_ host: HostRef) async throws -> any RemoteHost {
      let connection = Connection()
      made.withLock { $0.append(connection) }
      return connection
    }
    var last: Connection { made.withLock { $0.last! } }
    var count: Int { made.withLock { $0.count } }
  }

  let ref = HostRef(name: "h", address: "10.0.0.1", ssh: SSHSettings(), groups: [], role: .source)

  @Test func aConnectionIsKeptFromOneUseToTheNext() async throws {
    let connector = Connector()
    let pool = ConnectionPool(connector)
    for pass in 0..<3 {
      let host = try await pool.connect(ref)
      #expect(try await host.run("echo \(pass)").stdout == "echo \(pass)")
      await host.close()
    }
    #expect(connector.count == 1 && connector.last.commands.withLock { $0 } == 3)
    #expect(!connector.last.closed.withLock { $0 }, "a lease's close leaves it open")
    await pool.closeAll()
    #expect(connector.last.closed.withLock { $0 })
  }

  @Test func aKeptConnectionThatDiedIsReplacedAndItsFirstCommandRetried() async throws {
    let connector = Connector()
    let pool = ConnectionPool(connector)
    _ = try await pool.connect(ref).run("first pass")
    let dead = connector.last
    dead.cut.withLock { $0 = true }
    let host = try await pool.connect(ref)
    #expect(try await host.run("second pass").stdout == "second pass")
    #expect(connector.count == 2 && dead.closed.withLock { $0 })
    #expect(try await host.run("more").status == 0, "the lease goes on on the new connection")
    #expect(connector.last.commands.withLock { $0 } == 2)
  }

  /// A host cut off the network does not fail a kept connection's command at once (the kernel gives up
  /// after 45 s): the first command gets `firstAnswer`, then goes to a new connection.
  @Test func aKeptConnectionThatDoesNotAnswerIsGivenUpAfterFirstAnswer() async throws {
    let connector = Connector()
    let pool = ConnectionPool(connector, firstAnswer: .milliseconds(200))
    _ = try await pool.connect(ref).run("first pass")
    let silent = connector.last
    silent.silent.withLock { $0 = true }
    #expect(try await pool.connect(ref).run("second pass").stdout == "second pass")
    #expect(connector.count == 2 && silent.closed.withLock { $0 })
  }

  @Test func onlyTheFirstCommandOfAKeptConnectionIsRetried() async throws {
    let connector = Connector()
    let pool = ConnectionPool(connector)
    // A new connection that fails: not retried (it was just made), and not kept.
    let fresh = try await pool.connect(ref)
    connector.last.cut.withLock { $0 = true }
    await #expect(throws: FleetError.self) { try await fresh.run("x") }
    #expect(connector.count == 1)
    // A kept connection that fails after a first command succeeded on it: not retried either.
    let host = try await pool.connect(ref)
    #expect(connector.count == 2)
    _ = try await host.run("restart something")
    connector.last.cut.withLock { $0 = true }
    await #expect(throws: FleetError.self) { try await host.run("again") }
    #expect(connector.count == 2, "a command after the first may have had effects: no retry")
    _ = try await pool.connect(ref).run("next pass")
    #expect(connector.count == 3, "the failed connection was forgotten")
  }

  @Test func aConnectionIdleTooLongIsNotReused() async throws {
    let connector = Connector()
    let pool = ConnectionPool(connector, maxIdle: 0)
    _ = try await pool.connect(ref).run("one")
    try await Task.sleep(for: .milliseconds(20))
    _ = try await pool.connect(ref).run("two")
    #expect(connector.count == 2 && connector.made.withLock { $0[0].closed.withLock { $0 } })
  }
}
