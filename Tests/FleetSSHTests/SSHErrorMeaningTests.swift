import FleetCore
import FleetTestSupport
import Foundation
import Testing

@testable import FleetSSH

/// What the errors a real sshd provokes mean (see ``LocalSSHD``): the line between unreachable and failed is
/// the login; a refused login or host key is auth.
@Suite(.serialized, .enabled(if: LocalSSHD.isSupported))
struct SSHErrorMeaningTests {
  let server = LocalSSHD.shared

  func endpoint(user: String = "root", port: Int? = nil) -> SSHEndpoint {
    SSHEndpoint(host: "127.0.0.1", port: port ?? server.port, user: user)
  }

  func options(key: String? = nil, knownHosts: String? = nil) -> SSHOptions {
    SSHOptions(
      identity: .keyFile(path: key ?? server.clientKey, passphrase: nil),
      knownHostsFile: knownHosts ?? server.knownHosts, connectTimeout: .seconds(10),
      operationTimeout: .seconds(60))
  }

  /// The error `body` throws on a logged-in connection (nil if it throws none).
  func errorAfterLogin(
    user: String = "root", _ body: @escaping @Sendable (SSHConnection) async throws -> Void
  ) async throws -> FleetError? {
    try await SSHClient.withClient(threads: 4) { client in
      try await client.withConnection(endpoint(user: user), options: options()) { connection in
        do {
          try await body(connection)
          return nil
        } catch let error as FleetError {
          return error
        }
      }
    }
  }

  /// The error connecting and logging in throws (nil if it succeeds).
  func connectError(_ endpoint: SSHEndpoint, _ options: SSHOptions) async -> FleetError? {
    do {
      try await SSHClient.withClient(threads: 2) { client in
        try await client.withConnection(endpoint, options: options) { _ in }
      }
      return nil
    } catch {
      return error as? FleetError
    }
  }

  @Test func sftpWriteOntoAFullDiskIsFailed() async throws {
    let dir = NSTemporaryDirectory() + "fleetsync-full-\(UUID().uuidString)"
    try LocalSSHD.sh("mkdir -p \(dir) && mount -t tmpfs -o size=64k fleetsync-test \(dir)")
    defer { _ = try? LocalSSHD.sh("umount \(dir) && rmdir \(dir)") }
    let error = try await errorAfterLogin { connection in
      try await connection.upload([UInt8](repeating: 7, count: 1 << 20), to: "\(dir)/big")
    }
    #expect(error?.code == .sshSFTP)
    #expect(error?.message.contains("no space left") == true, "\(String(describing: error))")
    #expect(error.map(HostOutcome.init) == error.map { .failed($0.description) })
    #expect(try LocalSSHD.sh("ls -A \(dir)") == "", "neither the target nor the temp file is left")
  }

  @Test func sftpWritePermissionDeniedIsFailed() async throws {
    let error = try await errorAfterLogin(user: "nobody") { connection in
      try await connection.upload(Array("x".utf8), to: "/root/fleetsync-denied-\(UUID().uuidString)")
    }
    #expect(error?.code == .sshSFTP)
    #expect(error?.message.contains("permission denied") == true, "\(String(describing: error))")
    #expect(error.map(HostOutcome.init) == error.map { .failed($0.description) })
  }

  @Test func deadlineAfterLoginIsFailed() async throws {
    let error = try await errorAfterLogin { connection in
      _ = try await connection.exec("sleep 30", timeout: .seconds(1))
    }
    #expect(error?.code == .sshTimeout)
    #expect(error.map(HostOutcome.init) == error.map { .failed($0.description) })
  }

  @Test func refusedTCPConnectIsUnreachable() async throws {
    let error = await connectError(endpoint(port: 1), options())
    #expect(error?.code == .sshConnect)
    #expect(error.map(HostOutcome.init) == error.map { .unreachable($0.description) })
  }

  @Test func refusedLoginIsAuth() async throws {
    let error = await connectError(endpoint(), options(key: server.wrongKey))
    #expect(error?.code == .sshAuth)
    #expect(error.map(HostOutcome.init) == error.map { .auth($0.description) })
  }

  @Test func unknownOrChangedHostKeyIsAuth() async throws {
    let file = NSTemporaryDirectory() + "fleetsync-kh-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: file) }
    #expect(FileManager.default.createFile(atPath: file, contents: nil))
    let unknown = await connectError(endpoint(), options(knownHosts: file))
    #expect(unknown?.code == .sshHostKeyUnknown)
    #expect(unknown.map(HostOutcome.init) == unknown.map { .auth($0.description) })
    let other = try String(contentsOfFile: server.wrongKey + ".pub", encoding: .utf8).split(separator: " ")
    try "[127.0.0.1]:\(server.port) \(other[0]) \(other[1])\n".write(
      toFile: file, atomically: true, encoding: .utf8)
    let changed = await connectError(endpoint(), options(knownHosts: file))
    #expect(changed?.code == .sshHostKeyChanged)
    #expect(changed.map(HostOutcome.init) == changed.map { .auth($0.description) })
  }
}
