import FleetCore
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A foreground `ssh-agent` that one test owns: started with one key loaded and this process's
/// `SSH_AUTH_SOCK` pointing at it, until ``stop()``.
///
/// `SSH_AUTH_SOCK` is process-wide: tests that use an agent must not run in parallel with each other.
public final class TestSSHAgent {
  /// Path of the agent's socket, a fresh name in the temporary directory.
  public let socket: String
  private let process: Process

  /// Starts `ssh-agent -D` on a new socket, waits for the socket, adds the private key at `key`
  /// with `ssh-add` and sets `SSH_AUTH_SOCK` to the socket. Stops the agent again if a step fails.
  public init(adding key: String) throws {
    socket = NSTemporaryDirectory() + "fleetsync-agent-\(UUID().uuidString)"
    process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-agent")
    process.arguments = ["-D", "-a", socket]
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    do {
      let socket = self.socket
      let process = self.process
      try waitForBlocking("ssh-agent's socket \(socket)", every: .milliseconds(50)) {
        FileManager.default.fileExists(atPath: socket) || !process.isRunning
      }
      guard process.isRunning else {
        throw FleetError(.io, "ssh-agent exited with status \(process.terminationStatus) before it listened")
      }
      try addKey(key)
    } catch {
      stop()
      throw error
    }
    setenv("SSH_AUTH_SOCK", socket, 1)
  }

  /// Runs `ssh-add -q key` against this agent (stderr discarded); throws when it fails.
  private func addKey(_ key: String) throws {
    let add = Process()
    add.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-add")
    add.arguments = ["-q", key]
    add.environment = ProcessInfo.processInfo.environment.merging(["SSH_AUTH_SOCK": socket]) { $1 }
    add.standardError = FileHandle.nullDevice
    try add.run()
    add.waitUntilExit()
    guard add.terminationStatus == 0 else {
      throw FleetError(.io, "ssh-add \(key) failed with status \(add.terminationStatus)")
    }
  }

  /// Kills the agent (SIGKILL), unsets `SSH_AUTH_SOCK` and removes the socket.
  public func stop() {
    kill(process.processIdentifier, SIGKILL)
    unsetenv("SSH_AUTH_SOCK")
    try? FileManager.default.removeItem(atPath: socket)
  }
}
