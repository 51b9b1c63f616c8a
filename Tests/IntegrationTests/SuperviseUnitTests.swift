import Foundation
import Testing

/// `systemd/fleetsync-supervise.service` checked by `systemd-analyze verify`, with ExecStart pointing
/// at the built `fleetsync` (verify checks that the binary exists).
@Suite("fleetsync supervise systemd unit")
struct SuperviseUnitTests {
  static let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("systemd/fleetsync-supervise.service").path

  static func verify(_ text: String) throws -> (status: Int32, output: String) {
    let scratch = try AgentIT.Scratch("supervise-unit")
    defer { scratch.remove() }
    _ = try scratch.file("fleetsync-supervise.service", text)
    let result = try CLI.runProcess(
      AgentSystemdUnitTests.analyze, ["verify", "--man=no", scratch.path + "/fleetsync-supervise.service"])
    return (result.status, result.stdout + result.stderr)
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: AgentSystemdUnitTests.analyze)))
  func unitVerifiesAndRunsSupervise() throws {
    let text = try String(contentsOfFile: Self.unit, encoding: .utf8)
    #expect(text.contains("ExecStart=/usr/local/bin/fleetsync supervise -i "))
    let built = text.replacingOccurrences(of: "/usr/local/bin/fleetsync", with: CLI.binDir + "/fleetsync")
    let result = try Self.verify(built)
    #expect(result.status == 0, "\(result.output)")
    let broken = try Self.verify(built.replacingOccurrences(of: "RestartSec=10", with: "RestartSec=soon"))
    #expect(broken.output.contains("sec value"), "the check can fail: \(broken.output)")
  }
}
