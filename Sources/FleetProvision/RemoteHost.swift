import FleetCore
import FleetInventory

/// What provisioning needs from a connection to one host; `SSHRemoteHost` adapts FleetSSH to it
/// and unit tests use an in-memory fake.
public protocol RemoteHost: Sendable {
  /// Runs a `sh` command line; returns its output and exit status (non-zero is not an error here).
  func run(_ command: String) async throws -> CommandOutput
  /// Writes `bytes` to `path` atomically (temp name, fsync, rename) with `mode`.
  func write(_ bytes: [UInt8], to path: String, mode: Int) async throws
  /// Uploads a local file to `path` atomically with `mode`.
  func upload(localPath: String, to path: String, mode: Int) async throws
  /// Reads a small remote file; nil when it does not exist.
  func read(_ path: String) async throws -> [UInt8]?
  /// Closes the connection.
  func close() async
}

/// Opens connections to inventory hosts.
public protocol HostConnector: Sendable {
  /// Connects to `host` (its merged SSH settings); errors carry the SSH layer's codes.
  func connect(_ host: HostRef) async throws -> any RemoteHost
}

/// The result of a remote command.
public struct CommandOutput: Sendable, Equatable {
  /// Exit status (or 128 + signal number).
  public var status: Int32
  /// Standard output.
  public var stdout: String
  /// Standard error.
  public var stderr: String

  /// Makes a result.
  public init(status: Int32, stdout: String, stderr: String) {
    self.status = status
    self.stdout = stdout
    self.stderr = stderr
  }
}

extension RemoteHost {
  /// Runs a command and throws when it exits non-zero, naming `what` and the stderr tail.
  @discardableResult
  func check(_ command: String, _ what: String) async throws -> String {
    let out = try await run(command)
    guard out.status == 0 else {
      let tail = out.stderr.split(separator: "\n").suffix(3).joined(separator: " | ")
      throw FleetError(.remoteStep, "\(what) failed (exit \(out.status)): \(tail)")
    }
    return out.stdout
  }
}

extension FleetError.Code {
  /// A provisioning step on a host failed.
  public static let remoteStep = FleetError.Code("provision.step", meaning: .failed)
  /// Local controller state (secrets file, state file) is unusable.
  public static let localState = FleetError.Code("provision.localState", meaning: .failed)
}
