import FleetCore
import Foundation

@testable import FleetProvision

/// A ``RemoteHost`` that is this machine: commands run in `/bin/sh` on a thread of their own, so
/// several can run at once (for races on real files). Writes and reads are not needed by the tests
/// that use it and fail.
struct LocalShellHost: RemoteHost {
  func run(_ command: String) async throws -> CommandOutput {
    try await withCheckedThrowingContinuation { continuation in
      Thread.detachNewThread {
        continuation.resume(with: Result { try Self.runNow(command) })
      }
    }
  }

  static func runNow(_ command: String) throws -> CommandOutput {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandOutput(
      status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
      stderr: String(decoding: stderr, as: UTF8.self))
  }

  func write(_ bytes: [UInt8], to path: String, mode: Int) async throws {
    throw FleetError(.io, "LocalShellHost does not write files")
  }

  func upload(localPath: String, to path: String, mode: Int) async throws {
    throw FleetError(.io, "LocalShellHost does not upload files")
  }

  func read(_ path: String) async throws -> [UInt8]? {
    throw FleetError(.io, "LocalShellHost does not read files")
  }

  func close() async {}
}
