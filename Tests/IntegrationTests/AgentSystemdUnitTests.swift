import Foundation
import Testing

/// `systemd/fleetsync-watch@.service` checked by `systemd-analyze verify` as an instance.
@Suite("fleetsync-watch systemd unit")
struct AgentSystemdUnitTests {
  static let analyze = "/usr/bin/systemd-analyze"
  static let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("systemd/fleetsync-watch@.service").path

  /// Verifies `text` as `fleetsync-watch@.service`, instance `data`; returns exit status and output.
  static func verify(_ text: String) throws -> (status: Int32, output: String) {
    let scratch = try AgentIT.Scratch("unit")
    defer { scratch.remove() }
    _ = try scratch.file("fleetsync-watch@.service", text)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: analyze)
    process.arguments = [
      "verify", "--man=no", "--recursive-errors=yes",
      "./fleetsync-watch@.service:fleetsync-watch@data.service",
    ]
    process.currentDirectoryURL = URL(fileURLWithPath: scratch.path)
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  /// The unit with ExecStart pointing at the built binary (verify checks that the binary exists).
  static func unitForThisBuild() throws -> String {
    try String(contentsOfFile: unit, encoding: .utf8).replacingOccurrences(
      of: "/var/lib/fleetsync/bin/fleetsync-watch", with: AgentIT.binary!)
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: analyze) && AgentIT.binary != nil))
  func unitVerifies() throws {
    let result = try Self.verify(try Self.unitForThisBuild())
    #expect(result.status == 0, "\(result.output)")
    #expect(result.output.isEmpty, "\(result.output)")
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: analyze) && AgentIT.binary != nil))
  func unitHasTheRequiredSettings() throws {
    let text = try String(contentsOfFile: Self.unit, encoding: .utf8)
    let lines = Set(text.split(separator: "\n").map(String.init))
    for required in [
      "Type=notify", "WatchdogSec=30", "Restart=on-failure", "ProtectSystem=strict",
      "NoNewPrivileges=yes", "PrivateTmp=yes",
      "ExecStart=/var/lib/fleetsync/bin/fleetsync-watch run --config /etc/fleetsync/watch/%i.conf",
    ] {
      #expect(lines.contains(required), "missing \(required)")
    }
    #expect(lines.contains { $0.hasPrefix("ReadWritePaths=/var/lib/fleetsync") })
    let unitSection = text.components(separatedBy: "[Service]")[0]
    #expect(unitSection.contains("StartLimitIntervalSec="))
    #expect(unitSection.contains("StartLimitBurst="))
    // The check itself can fail: a broken value is reported.
    let broken = try Self.verify(
      try Self.unitForThisBuild().replacingOccurrences(of: "WatchdogSec=30", with: "WatchdogSec=soon"))
    #expect(broken.output.contains("WatchdogSec") || broken.output.contains("sec value"), "\(broken.output)")
  }
}
