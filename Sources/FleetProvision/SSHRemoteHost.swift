import FleetCore
import FleetInventory
import FleetSSH
import Foundation

/// ``RemoteHost`` over a FleetSSH connection.
public struct SSHRemoteHost: RemoteHost {
  let connection: SSHConnection

  /// Wraps a connection.
  public init(connection: SSHConnection) { self.connection = connection }

  public func run(_ command: String) async throws -> CommandOutput {
    let result = try await connection.exec(command)
    return CommandOutput(status: result.exitStatus, stdout: result.stdoutString, stderr: result.stderrString)
  }

  public func write(_ bytes: [UInt8], to path: String, mode: Int) async throws {
    try await connection.upload(bytes, to: path, mode: mode)
  }

  public func upload(localPath: String, to path: String, mode: Int) async throws {
    try await connection.uploadFile(localPath: localPath, to: path, mode: mode)
  }

  public func read(_ path: String) async throws -> [UInt8]? {
    try await connection.readFile(path)
  }

  public func close() async { await connection.close() }
}

/// Connects to inventory hosts with their merged SSH settings.
public struct SSHHostConnector: HostConnector {
  let client: SSHClient
  /// How long one remote command may run (nil: FleetSSH's default, 300 s).
  let operationTimeout: Duration?

  /// How long one remote command of `status`, `heal` and `supervise` may run: a host cut off in the
  /// middle of a command is given up after it (and reported), instead of holding a pass (and so the
  /// other hosts' repairs) for FleetSSH's default of 300 s. Their longest command, a restart, stops
  /// an instance within 10 s (or systemd's stop timeout) and waits 5 s for it to start.
  public static let checkTimeout: Duration = .seconds(60)

  /// Uses `client`'s thread pool for every connection; `operationTimeout` for commands that run long
  /// (a checksum of a whole tree).
  public init(client: SSHClient, operationTimeout: Duration? = nil) {
    self.client = client
    self.operationTimeout = operationTimeout
  }

  public func connect(_ host: HostRef) async throws -> any RemoteHost {
    let ssh = host.ssh
    let identity: SSHIdentity
    if let path = ssh.identity {
      var passphrase: Secret?
      if let file = ssh.passphraseFile {
        guard let text = try? String(contentsOfFile: expand(file), encoding: .utf8) else {
          throw FleetError(.invalidInput, "\(host.name): cannot read passphrase_file \(file)")
        }
        passphrase = Secret(text.trimmingCharacters(in: .newlines))
      }
      identity = .keyFile(path: expand(path), passphrase: passphrase)
    } else {
      identity = .agent
    }
    var options = SSHOptions(
      identity: identity, knownHostsFile: expand(ssh.knownHosts),
      hostKeyPolicy: HostKeyPolicy(rawValue: ssh.hostKeyPolicy) ?? .strict,
      connectTimeout: .seconds(ssh.connectTimeout))
    if let operationTimeout { options.operationTimeout = operationTimeout }
    let endpoint = SSHEndpoint(host: host.address, port: ssh.port, user: ssh.user)
    return SSHRemoteHost(connection: try await client.connect(endpoint, options: options))
  }

  func expand(_ path: String) -> String {
    guard path.hasPrefix("~/") else { return path }
    return (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + String(path.dropFirst(1))
  }
}
