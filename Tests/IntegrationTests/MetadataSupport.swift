import FleetTestSupport
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Runs `command` with `/bin/sh -ec`; returns its standard output, throws with its output when it fails.
@discardableResult
func shell(_ command: String) throws -> String {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/bin/sh")
  p.arguments = ["-ec", command]
  let out = Pipe()
  p.standardOutput = out
  p.standardError = out
  try p.run()
  let data = out.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  let text = String(decoding: data, as: UTF8.self)
  guard p.terminationStatus == 0 else {
    throw POSIXErrorBox(EIO, "`\(command)` exited \(p.terminationStatus): \(text)")
  }
  return text
}

extension RsyncDaemon {
  /// Pulls the whole module back into `destination` the way a restore does: as root, through the
  /// daemon, with the metadata flags every data-moving rsync uses (`-aAXHS --numeric-ids`).
  func pull(into destination: String) throws {
    try shell(
      "rsync -aAXHS --numeric-ids --password-file=\(passwordFile) "
        + "rsync://\(user)@127.0.0.1:\(port)/\(module)/ \(destination)/")
  }

  /// Pulls the module into a fresh directory under `scratch` and compares it with `expected`:
  /// the differences, empty when the round trip gave everything back.
  func roundTripDifferences(_ expected: TreeSnapshot, scratch: TempDir) throws -> [String] {
    let destination = try scratch.sub("pulled-\(UInt64.random(in: 0...UInt64.max))")
    defer { try? FileManager.default.removeItem(atPath: destination) }
    try pull(into: destination)
    return try TreeSnapshot.capture(destination).differences(from: expected)
  }
}
